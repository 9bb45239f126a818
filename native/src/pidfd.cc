#include "pidfd.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "errors.h"

namespace pidfd {
namespace {

int Int(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().Int32Value() : -1;
}

// pidfdOpen(pid) -> fd (close with closeFd)
Napi::Value Open(const Napi::CallbackInfo& info) {
  int pid = Int(info, 0);
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) {
    errors::Throw(info.Env(), {"pidfd", "pidfd_open", errno, "", "pid " + std::to_string(pid)});
    return info.Env().Undefined();
  }
  return Napi::Number::New(info.Env(), fd);
}

// pidfdSignal(fd, signo): ESRCH means the process is already gone.
Napi::Value Signal(const Napi::CallbackInfo& info) {
  int fd = Int(info, 0), sig = Int(info, 1);
  if (syscall(SYS_pidfd_send_signal, fd, sig, nullptr, 0) != 0) {
    errors::Throw(info.Env(), {"pidfd", "pidfd_send_signal", errno, "", "signal " + std::to_string(sig)});
  }
  return info.Env().Undefined();
}

// pidfdExited(fd, timeoutMs) -> true once the process has exited. A pidfd
// becomes readable when its process terminates.
Napi::Value Exited(const Napi::CallbackInfo& info) {
  int fd = Int(info, 0), timeout = Int(info, 1);
  struct pollfd p = {fd, POLLIN, 0};
  int r;
  do {
    r = poll(&p, 1, timeout < 0 ? 0 : timeout);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    errors::Throw(info.Env(), {"pidfd", "poll", errno, "", ""});
    return info.Env().Undefined();
  }
  return Napi::Boolean::New(info.Env(), r > 0);
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd = Int(info, 0);
  if (fd >= 0) close(fd);
  return info.Env().Undefined();
}

}  // namespace

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("pidfdOpen", Napi::Function::New(env, Open));
  exports.Set("pidfdSignal", Napi::Function::New(env, Signal));
  exports.Set("pidfdExited", Napi::Function::New(env, Exited));
  exports.Set("closeFd", Napi::Function::New(env, Close));
}

}  // namespace pidfd

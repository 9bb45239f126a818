#include "pidfd.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "errors.h"

namespace pidfd {
namespace {

// The step errors name: server/sandbox opens pidfds to end a sandbox's init,
// i.e. in `teardown`. A future caller with another purpose should pass its
// step in, as mount/umount do.
const char kStep[] = "teardown";

int Int(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().Int32Value() : -1;
}

// pidfdOpen(pid) -> fd (close with closeFd)
Napi::Value Open(const Napi::CallbackInfo& info) {
  int pid = Int(info, 0);
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) {
    errors::Throw(info.Env(), {kStep, "pidfd_open", errno, "", "pid " + std::to_string(pid)});
    return info.Env().Undefined();
  }
  return Napi::Number::New(info.Env(), fd);
}

// pidfdSignal(fd, signo): ESRCH means the process is already gone.
Napi::Value Signal(const Napi::CallbackInfo& info) {
  int fd = Int(info, 0), sig = Int(info, 1);
  if (syscall(SYS_pidfd_send_signal, fd, sig, nullptr, 0) != 0) {
    errors::Throw(info.Env(),
                  {kStep, "pidfd_send_signal", errno, "", "signal " + std::to_string(sig)});
  }
  return info.Env().Undefined();
}

Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd = Int(info, 0);
  if (fd >= 0) close(fd);
  return info.Env().Undefined();
}

// setChildSubreaper(): the sandbox init is a grandchild (the helper's
// user-namespace stage exits right after forking it). Without this it would
// be re-parented to the host's PID 1 and linger as a zombie until that init
// gets round to reaping it; as a subreaper we can reap our own inits.
Napi::Value SetChildSubreaper(const Napi::CallbackInfo& info) {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) {
    errors::Throw(info.Env(), {"init", "prctl", errno, "", "PR_SET_CHILD_SUBREAPER"});
  }
  return info.Env().Undefined();
}

// reapChild(pid) -> true if `pid` was our exited child and is now reaped.
// Only ever a specific pid: a waitpid(-1) would steal libuv's and the pidfd watchers'
// children and lose their exit codes (docs/terminals.md#never-reap-globally).
Napi::Value ReapChild(const Napi::CallbackInfo& info) {
  int pid = Int(info, 0);
  if (pid <= 0) return Napi::Boolean::New(info.Env(), false);
  int st = 0;
  pid_t r;
  do {
    r = waitpid(pid, &st, WNOHANG);
  } while (r < 0 && errno == EINTR);
  return Napi::Boolean::New(info.Env(), r == pid);
}

}  // namespace

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("pidfdOpen", Napi::Function::New(env, Open));
  exports.Set("pidfdSignal", Napi::Function::New(env, Signal));
  exports.Set("closeFd", Napi::Function::New(env, Close));
  exports.Set("setChildSubreaper", Napi::Function::New(env, SetChildSubreaper));
  exports.Set("reapChild", Napi::Function::New(env, ReapChild));
}

}  // namespace pidfd

#include "console.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "errors.h"
#include "helper/fd_message.h"

namespace console {
namespace {

// Every caller is a terminal entering its sandbox: the step `join`.
const char kStep[] = "join";

int Int(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].IsNumber() ? info[i].As<Napi::Number>().Int32Value() : -1;
}

// consoleSocket() -> [server, helper]: a SOCK_SEQPACKET socketpair, both
// ends close-on-exec (the join helper copies `helper` with pidfd_getfd).
Napi::Value Socket(const Napi::CallbackInfo& info) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    errors::Throw(info.Env(), {kStep, "socketpair", errno, "", "console socket"});
    return info.Env().Undefined();
  }
  Napi::Array a = Napi::Array::New(info.Env(), 2);
  a.Set(0u, Napi::Number::New(info.Env(), sv[0]));
  a.Set(1u, Napi::Number::New(info.Env(), sv[1]));
  return a;
}

// receivePty(sock) -> fd (non-blocking, close-on-exec), or -1 if nothing is
// queued yet. Never blocks. The
// fd comes from a helper that already entered a sandbox, so it is checked
// for what it must be - a pty master, /dev/ptmx's 5:2 - and refused (closed,
// EBADMSG) otherwise: the server never reads an arbitrary file or FIFO.
Napi::Value ReceivePty(const Napi::CallbackInfo& info) {
  int sock = Int(info, 0);
  FdMessage m;
  ssize_t n;
  do n = recvmsg(sock, &m.msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Napi::Number::New(info.Env(), -1);
  if (n < 0) {
    errors::Throw(info.Env(), {kStep, "recvmsg", errno, "", "console socket"});
    return info.Env().Undefined();
  }
  int fd = -1;
  struct cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
  if (c != nullptr && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
      c->cmsg_len == CMSG_LEN(sizeof(int)))
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
  struct stat st;
  const char* bad = nullptr;
  if (fd < 0)
    bad = n == 0 ? "the helper closed the console socket without a pty" : "no fd in the message";
  else if (m.msg.msg_flags & MSG_CTRUNC)
    bad = "more than one fd";
  else if (fstat(fd, &st) != 0 || !S_ISCHR(st.st_mode) || major(st.st_rdev) != 5 ||
           minor(st.st_rdev) != 2)
    bad = "not a pty master (5:2)";
  // Non-blocking: the server writes keystrokes to it from its event loop
  // (libuv's tty handle keeps whatever mode it finds on a master).
  if (bad == nullptr && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
    bad = "fcntl O_NONBLOCK failed";
  if (bad != nullptr) {
    if (fd >= 0) close(fd);
    errors::Throw(info.Env(), {kStep, "recvmsg", EBADMSG, "", bad});
    return info.Env().Undefined();
  }
  return Napi::Number::New(info.Env(), fd);
}

// setWindowSize(fd, cols, rows): TIOCSWINSZ on a pty master; the kernel
// sends SIGWINCH to the terminal's foreground process group itself.
Napi::Value SetWindowSize(const Napi::CallbackInfo& info) {
  int fd = Int(info, 0), cols = Int(info, 1), rows = Int(info, 2);
  struct winsize ws;
  memset(&ws, 0, sizeof ws);
  ws.ws_col = static_cast<unsigned short>(cols);
  ws.ws_row = static_cast<unsigned short>(rows);
  if (cols < 1 || rows < 1 || cols > 65535 || rows > 65535) {
    errors::Throw(info.Env(), {kStep, "ioctl", EINVAL, "", "TIOCSWINSZ: size out of range"});
  } else if (ioctl(fd, TIOCSWINSZ, &ws) != 0) {
    errors::Throw(info.Env(), {kStep, "ioctl", errno, "", "TIOCSWINSZ"});
  }
  return info.Env().Undefined();
}

}  // namespace

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("consoleSocket", Napi::Function::New(env, Socket));
  exports.Set("receivePty", Napi::Function::New(env, ReceivePty));
  exports.Set("setWindowSize", Napi::Function::New(env, SetWindowSize));
}

}  // namespace console

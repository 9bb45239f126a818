#include "spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "errors.h"

namespace spawn {
namespace {

// Spawn attributes for a helper: no signal blocked, every disposition the
// default (Node ignores SIGPIPE; a helper must see the defaults).
void DefaultSignals(posix_spawnattr_t* attr) {
  posix_spawnattr_init(attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(attr, &none);
  posix_spawnattr_setsigdefault(attr, &all);
  posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

class CreateWorker : public Napi::AsyncWorker {
 public:
  // gate_r: the read end of a scratch gate to hand the helper as fd 3
  // (startSandbox), or -1. Owned by the worker from here: closed once spawned.
  // spec_r: the read end of a pipe the caller writes the spec into later
  // (startSandbox without a spec), or -1: this worker writes `spec`. Owned
  // by the worker from here, as gate_r.
  CreateWorker(Napi::Env env, std::string helper, std::string spec, int gate_r = -1,
               int spec_r = -1)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        helper_(std::move(helper)),
        spec_(std::move(spec)),
        gate_r_(gate_r),
        spec_r_(spec_r) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    Run();
    if (gate_r_ >= 0) close(gate_r_);
    if (spec_r_ >= 0) close(spec_r_);
  }

  void Run() {
    int in[2], out[2];
    if (spec_r_ >= 0) {
      in[0] = spec_r_;  // the caller holds the write end
      in[1] = -1;
      spec_r_ = -1;
    } else if (pipe2(in, O_CLOEXEC) != 0) {
      return Fail({"clone", "pipe2", errno, "", ""});
    }
    if (pipe2(out, O_CLOEXEC) != 0) {
      close(in[0]);
      if (in[1] >= 0) close(in[1]);
      return Fail({"clone", "pipe2", errno, "", ""});
    }
    // posix_spawn (vfork-based) is the cheap and thread-safe way to start a
    // process from a multithreaded program: no copy of Node's page tables,
    // no code of ours between fork and exec. Signals are reset because Node
    // ignores SIGPIPE and the helper must see defaults.
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    // (dup2 onto itself clears FD_CLOEXEC in glibc >= 2.29, as POSIX now says.)
    if (gate_r_ >= 0) posix_spawn_file_actions_adddup2(&fa, gate_r_, 3);
    posix_spawnattr_t attr;
    DefaultSignals(&attr);
    char* argv[] = {const_cast<char*>(helper_.c_str()), const_cast<char*>("create"), nullptr};
    char* envp[] = {nullptr};
    pid_t pid = -1;
    int rc = posix_spawn(&pid, helper_.c_str(), &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(in[0]);
    close(out[1]);
    // Only the helper may hold the read end: when it dies, the server's
    // write to the gate fails (EPIPE) instead of filling a pipe nobody reads.
    if (gate_r_ >= 0) {
      close(gate_r_);
      gate_r_ = -1;
    }
    if (rc != 0) {
      if (in[1] >= 0) close(in[1]);
      close(out[0]);
      return Fail({"clone", "posix_spawn", rc, helper_, "cannot start the helper"});
    }
    const char* p = spec_.data();
    size_t left = in[1] >= 0 ? spec_.size() : 0;
    while (left > 0) {
      ssize_t n = write(in[1], p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // the helper died early; its output says why
      p += n;
      left -= static_cast<size_t>(n);
    }
    if (in[1] >= 0) close(in[1]);
    char buf[4096];
    for (;;) {
      ssize_t n = read(out[0], buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      output_.append(buf, static_cast<size_t>(n));
      if (output_.size() > 65536) break;
    }
    close(out[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    size_t nl = output_.find('\n');
    std::string first = output_.substr(0, nl);
    if (first.rfind("OK ", 0) == 0) {
      init_pid_ = atoi(first.c_str() + 3);
      return;
    }
    errors::Record r;
    if (errors::ParseRecord(first, &r)) return Fail(r);
    Fail({"clone", "", 0, helper_,
          "helper exited with status " +
              std::to_string(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st)) +
              " and no report"});
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (failed_) {
      deferred_.Reject(errors::Make(env, record_));
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("initPid", Napi::Number::New(env, init_pid_));
    deferred_.Resolve(o);
  }

 private:
  void Fail(const errors::Record& r) {
    failed_ = true;
    record_ = r;
  }

  Napi::Promise::Deferred deferred_;
  std::string helper_, spec_, output_;
  int gate_r_ = -1;
  int spec_r_ = -1;
  int init_pid_ = -1;
  bool failed_ = false;
  errors::Record record_;
};

// createSandbox(helperPath, spec: Buffer) -> Promise<{initPid}>
Napi::Value CreateSandbox(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsBuffer()) {
    Napi::TypeError::New(env, "createSandbox(helperPath: string, spec: Buffer)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Buffer<char> b = info[1].As<Napi::Buffer<char>>();
  auto* w = new CreateWorker(env, info[0].As<Napi::String>().Utf8Value(),
                             std::string(b.Data(), b.Length()));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// startSandbox(helperPath, spec?: Buffer) -> {done: Promise<{initPid}>, gate: fd, spec?: fd}
// The same, for a spec with an await-scratch op: the helper starts now and
// waits there until the caller writes one byte to `gate` (the session disk
// is mounted) or closes it (give up). The caller owns `gate` and must close
// it either way. Without a spec the helper starts and waits for one on its
// stdin: the caller writes it to `spec` and closes that (closing it unwritten
// ends the helper with a spec error). The pipes are made here, on the JS
// thread, so the fds exist before this returns.
Napi::Value StartSandbox(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const bool later = info.Length() < 2 || info[1].IsUndefined();
  if (info.Length() < 1 || !info[0].IsString() || (!later && !info[1].IsBuffer())) {
    Napi::TypeError::New(env, "startSandbox(helperPath: string, spec?: Buffer)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int gate[2];
  if (pipe2(gate, O_CLOEXEC) != 0) {
    errors::Throw(env, {"clone", "pipe2", errno, "", "scratch gate"});
    return env.Undefined();
  }
  int spec[2] = {-1, -1};
  if (later && pipe2(spec, O_CLOEXEC) != 0) {
    const int e = errno;
    close(gate[0]);
    close(gate[1]);
    errors::Throw(env, {"clone", "pipe2", e, "", "spec pipe"});
    return env.Undefined();
  }
  std::string bytes;
  if (!later) {
    Napi::Buffer<char> b = info[1].As<Napi::Buffer<char>>();
    bytes.assign(b.Data(), b.Length());
  }
  auto* w = new CreateWorker(env, info[0].As<Napi::String>().Utf8Value(), std::move(bytes), gate[0],
                             spec[0]);
  Napi::Object o = Napi::Object::New(env);
  o.Set("done", w->Promise());
  o.Set("gate", Napi::Number::New(env, gate[1]));
  if (later) o.Set("spec", Napi::Number::New(env, spec[1]));
  w->Queue();
  return o;
}

// Starts `path argv...` with three pipes as its stdin/stdout/stderr, by
// posix_spawn on a pool thread: libuv's own spawn forks the whole Node
// process on the JS thread and then waits there for the exec, which held the
// event loop (and every student's echo) 7-9 ms per check on a class's server
// (docs/benchmarks.md, twentieth session). The parent's ends and a pidfd
// come back; watchExit reaps the child.
class PipedWorker : public Napi::AsyncWorker {
 public:
  PipedWorker(Napi::Env env, std::string path, std::vector<std::string> argv)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        path_(std::move(path)),
        argv_(std::move(argv)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    int p[3][2] = {{-1, -1}, {-1, -1}, {-1, -1}};
    for (auto& fds : p) {
      if (pipe2(fds, O_CLOEXEC) != 0) {
        err_ = errno;
        what_ = "pipe2";
        return CloseAll(p);
      }
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[0][0], 0);
    posix_spawn_file_actions_adddup2(&fa, p[1][1], 1);
    posix_spawn_file_actions_adddup2(&fa, p[2][1], 2);
    posix_spawnattr_t attr;
    DefaultSignals(&attr);
    std::vector<char*> argv;
    argv.push_back(const_cast<char*>(path_.c_str()));
    for (auto& a : argv_) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    char* envp[] = {nullptr};
    int rc = posix_spawn(&pid_, path_.c_str(), &fa, &attr, argv.data(), envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
      err_ = rc;
      what_ = "posix_spawn";
      return CloseAll(p);
    }
    // The child's ends are its own now.
    close(p[0][0]);
    close(p[1][1]);
    close(p[2][1]);
    stdin_ = p[0][1];
    stdout_ = p[1][0];
    stderr_ = p[2][0];
    pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
    // Cannot fail for our own unreaped child on Linux >= 5.3 (waitid P_PIDFD: 5.4;
    // the doctor's floor is higher).
    if (pidfd_ < 0) {
      err_ = errno;
      what_ = "pidfd_open";
      kill(pid_, SIGKILL);
      while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
      }
      close(stdin_);
      close(stdout_);
      close(stderr_);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (err_ != 0) {
      deferred_.Reject(errors::Make(env, {"join", what_, err_, path_, "cannot start the helper"}));
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("pid", Napi::Number::New(env, pid_));
    o.Set("pidfd", Napi::Number::New(env, pidfd_));
    o.Set("stdin", Napi::Number::New(env, stdin_));
    o.Set("stdout", Napi::Number::New(env, stdout_));
    o.Set("stderr", Napi::Number::New(env, stderr_));
    deferred_.Resolve(o);
  }

 private:
  static void CloseAll(int (&p)[3][2]) {
    for (auto& fds : p)
      for (int fd : fds)
        if (fd >= 0) close(fd);
  }

  Napi::Promise::Deferred deferred_;
  std::string path_;
  std::vector<std::string> argv_;
  pid_t pid_ = -1;
  int pidfd_ = -1, stdin_ = -1, stdout_ = -1, stderr_ = -1;
  int err_ = 0;
  const char* what_ = "";
};

// spawnPiped(path, args: string[]) -> Promise<{pid, pidfd, stdin, stdout, stderr}>
// (fds, close-on-exec; the caller owns them and must watchExit the pidfd).
Napi::Value SpawnPiped(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray()) {
    Napi::TypeError::New(env, "spawnPiped(path: string, args: string[])")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array a = info[1].As<Napi::Array>();
  std::vector<std::string> args;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value v = a.Get(i);
    if (!v.IsString()) {
      Napi::TypeError::New(env, "spawnPiped: every arg must be a string")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    args.push_back(v.As<Napi::String>().Utf8Value());
  }
  auto* w = new PipedWorker(env, info[0].As<Napi::String>().Utf8Value(), std::move(args));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

// One child being watched: its pidfd polled on the JS thread's loop.
struct ExitWatch {
  uv_poll_t poll;
  int pidfd;
  Napi::FunctionReference cb;
  Napi::AsyncContext* context;
};

void OnExitReadable(uv_poll_t* handle, int /*status*/, int /*events*/) {
  auto* w = static_cast<ExitWatch*>(handle->data);
  siginfo_t si{};
  int r;
  do {
    r = waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(w->pidfd), &si, WEXITED | WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0 && si.si_pid == 0) return;  // readable before the zombie: next time
  uv_poll_stop(handle);
  close(w->pidfd);
  // code: the exit status, or -1 if killed by `signal` (or already reaped: both -1/0).
  int code = -1, sig = 0;
  if (r == 0) {
    if (si.si_code == CLD_EXITED)
      code = si.si_status;
    else
      sig = si.si_status;
  }
  Napi::Env env = w->cb.Env();
  {
    Napi::HandleScope scope(env);
    w->cb.MakeCallback(env.Global(), {Napi::Number::New(env, code), Napi::Number::New(env, sig)},
                       *w->context);
    // A listener that threw: report it as Node does for its own callbacks
    // (uncaughtException), never leave it pending for the next call in.
    if (env.IsExceptionPending()) {
      Napi::Error e = env.GetAndClearPendingException();
      napi_fatal_exception(env, e.Value());
    }
  }
  uv_close(reinterpret_cast<uv_handle_t*>(handle), [](uv_handle_t* h) {
    auto* w = static_cast<ExitWatch*>(h->data);
    delete w->context;
    delete w;
  });
}

// watchExit(pidfd, cb(code, signal)): calls cb once the child has exited and
// is reaped (waitid P_PIDFD: only that child, never anyone else's). Takes
// the pidfd (closed then). Keeps the loop alive until then.
Napi::Value WatchExit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "watchExit(pidfd: number, cb: (code, signal) => void)")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) {
    errors::Throw(env, {"join", "napi_get_uv_event_loop", EINVAL, "", "no event loop"});
    return env.Undefined();
  }
  auto* w = new ExitWatch();
  w->pidfd = info[0].As<Napi::Number>().Int32Value();
  w->cb = Napi::Persistent(info[1].As<Napi::Function>());
  w->context = new Napi::AsyncContext(env, "underlay:exit");
  w->poll.data = w;
  const int fd = w->pidfd;
  const char* what = "uv_poll_init";
  int rc = uv_poll_init(loop, &w->poll, fd);
  if (rc == 0) what = "uv_poll_start";
  if (rc != 0) {
    delete w->context;
    delete w;
  } else if ((rc = uv_poll_start(&w->poll, UV_READABLE, OnExitReadable)) != 0) {
    delete w->context;
    w->context = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&w->poll),
             [](uv_handle_t* h) { delete static_cast<ExitWatch*>(h->data); });
  }
  if (rc != 0) {
    close(fd);
    errors::Throw(env, {"join", what, -rc, "", "pidfd " + std::to_string(fd)});
  }
  return env.Undefined();
}
}  // namespace

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("createSandbox", Napi::Function::New(env, CreateSandbox));
  exports.Set("startSandbox", Napi::Function::New(env, StartSandbox));
  exports.Set("spawnPiped", Napi::Function::New(env, SpawnPiped));
  exports.Set("watchExit", Napi::Function::New(env, WatchExit));
}

}  // namespace spawn

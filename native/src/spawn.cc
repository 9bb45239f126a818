#include "spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "errors.h"

namespace spawn {
namespace {

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
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
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

}  // namespace

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("createSandbox", Napi::Function::New(env, CreateSandbox));
  exports.Set("startSandbox", Napi::Function::New(env, StartSandbox));
}

}  // namespace spawn

// underlay_native.node: the closed set of syscall wrappers the server may use.
// Each function is a thin shell around one kernel operation; which paths,
// flags and orders to use is decided in server/sandbox (TypeScript).
//
// Nothing here changes the namespaces of the Node process: mount/umount act
// on the host mount namespace the server already lives in, and everything
// that needs new namespaces runs in the underlay-nsexec helper.
#include <napi.h>

#include "console.h"
#include "errors.h"
#include "mount.h"
#include "pidfd.h"
#include "spawn.h"

namespace {

// initialize(factory): every error the addon throws or rejects with is
// factory({code, errno, syscall, path, step, detail}) (errors.h).
Napi::Value Initialize(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsFunction()) {
    Napi::TypeError::New(info.Env(), "initialize(factory) expects (props) => Error")
        .ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  errors::SetFactory(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("initialize", Napi::Function::New(env, Initialize));
  mounts::Register(env, exports);
  pidfd::Register(env, exports);
  spawn::Register(env, exports);
  console::Register(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(underlay_native, Init)

#include "errors.h"

#include <cstring>
#include <vector>

namespace errors {
namespace {
Napi::FunctionReference g_factory;

Napi::Object Props(Napi::Env env, const Record& r) {
  const char* code = r.err ? strerrorname_np(r.err) : nullptr;
  Napi::Object props = Napi::Object::New(env);
  props.Set("code", code ? Napi::Value(Napi::String::New(env, code)) : env.Undefined());
  props.Set("errno", Napi::Number::New(env, r.err));
  props.Set("syscall", Napi::String::New(env, r.syscall));
  props.Set("path", Napi::String::New(env, r.path));
  props.Set("step", Napi::String::New(env, r.step));
  props.Set("detail", Napi::String::New(env, r.detail));
  return props;
}
}  // namespace

void SetFactory(Napi::Function factory) {
  g_factory = Napi::Persistent(factory);
  g_factory.SuppressDestruct();
}

Napi::Value Make(Napi::Env env, const Record& r) {
  Napi::Object props = Props(env, r);
  if (!g_factory.IsEmpty()) {
    Napi::Value v = g_factory.Call({props});
    if (env.IsExceptionPending()) return env.GetAndClearPendingException().Value();
    if (v.IsObject()) return v;
  }
  // No factory yet (or it returned no object): nothing formats a message
  // here, so the errno name stands in and the props stay on the error.
  Napi::Value code = props.Get("code");
  Napi::Object e =
      Napi::Error::New(env, code.IsString() ? code.As<Napi::String>().Utf8Value() : "native error")
          .Value();
  for (const char* k : {"code", "errno", "syscall", "path", "step", "detail"})
    e.Set(k, props.Get(k));
  return e;
}

void Throw(Napi::Env env, const Record& r) { napi_throw(env, Make(env, r)); }

bool ParseRecord(const std::string& line, Record* out) {
  if (line.rfind("ERR\t", 0) != 0) return false;
  std::vector<std::string> f;
  size_t pos = 4;
  for (;;) {
    size_t tab = line.find('\t', pos);
    f.push_back(line.substr(pos, tab == std::string::npos ? std::string::npos : tab - pos));
    if (tab == std::string::npos) break;
    pos = tab + 1;
  }
  if (f.size() < 5) return false;
  out->step = f[0];
  out->syscall = f[1];
  out->err = atoi(f[2].c_str());
  out->path = f[3];
  out->detail = f[4];
  return true;
}

}  // namespace errors

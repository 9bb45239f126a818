#include "errors.h"

#include <cstring>
#include <vector>

namespace errors {
namespace {
Napi::FunctionReference g_class;
}

void SetErrorClass(Napi::Function cls) {
  g_class = Napi::Persistent(cls);
  g_class.SuppressDestruct();
}

Napi::Error Make(Napi::Env env, const Record& r) {
  const char* code = r.err ? strerrorname_np(r.err) : nullptr;
  std::string msg = r.step.empty() ? std::string("sandbox") : r.step;
  msg += ": ";
  if (!r.syscall.empty()) msg += r.syscall + " ";
  if (!r.path.empty()) msg += "'" + r.path + "' ";
  msg += r.err ? std::string(strerror(r.err)) + " (" + (code ? code : "?") + ")"
               : std::string("failed");
  if (!r.detail.empty()) msg += " [" + r.detail + "]";

  Napi::Object props = Napi::Object::New(env);
  props.Set("code", code ? Napi::Value(Napi::String::New(env, code)) : env.Undefined());
  props.Set("errno", Napi::Number::New(env, r.err));
  props.Set("syscall", Napi::String::New(env, r.syscall));
  props.Set("path", Napi::String::New(env, r.path));
  props.Set("step", Napi::String::New(env, r.step));
  props.Set("detail", Napi::String::New(env, r.detail));
  if (g_class.IsEmpty()) {
    Napi::Error e = Napi::Error::New(env, msg);
    Napi::Object o = e.Value();
    o.Set("code", props.Get("code"));
    o.Set("errno", props.Get("errno"));
    o.Set("syscall", props.Get("syscall"));
    o.Set("path", props.Get("path"));
    o.Set("step", props.Get("step"));
    return e;
  }
  Napi::Object obj = g_class.New({Napi::String::New(env, msg), props});
  return Napi::Error(env, obj);
}

void Throw(Napi::Env env, const Record& r) { Make(env, r).ThrowAsJavaScriptException(); }

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

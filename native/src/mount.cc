#include "mount.h"

#include <sys/mount.h>

#include <cerrno>
#include <string>

#include "errors.h"
#include "helper/flags.h"

namespace mounts {
namespace {

std::string Str(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].IsString() ? info[i].As<Napi::String>().Utf8Value()
                                                 : std::string();
}

// mount(source, target, fstype, flags, data, step)
Napi::Value Mount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string src = Str(info, 0), target = Str(info, 1), fstype = Str(info, 2), fl = Str(info, 3),
              data = Str(info, 4), step = Str(info, 5);
  unsigned long f = 0;
  if (!flags::parse_mount(fl, &f)) {
    errors::Throw(env, {step, "mount", EINVAL, target, "unknown mount flag in " + fl});
    return env.Undefined();
  }
  if (::mount(src.empty() ? nullptr : src.c_str(), target.c_str(),
              fstype.empty() ? nullptr : fstype.c_str(), f,
              data.empty() ? nullptr : data.c_str()) != 0) {
    std::string detail = "fstype=" + fstype + " flags=" + fl;
    if (!data.empty()) detail += " data=" + data;
    errors::Throw(env, {step, "mount", errno, target, detail});
  }
  return env.Undefined();
}

// umount(target, detach, step): EINVAL (not a mount point) and ENOENT are
// reported like any other error; teardown decides what "already gone" means.
Napi::Value Umount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string target = Str(info, 0), step = Str(info, 2);
  bool detach = info.Length() > 1 && info[1].ToBoolean();
  if (::umount2(target.c_str(), detach ? MNT_DETACH : 0) != 0) {
    errors::Throw(env, {step, "umount2", errno, target, detach ? "MNT_DETACH" : ""});
  }
  return env.Undefined();
}

}  // namespace

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("mount", Napi::Function::New(env, Mount));
  exports.Set("umount", Napi::Function::New(env, Umount));
}

}  // namespace mounts

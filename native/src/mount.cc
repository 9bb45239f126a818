#include "mount.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "errors.h"
#include "helper/flags.h"

namespace mounts {
namespace {

std::string Str(const Napi::CallbackInfo& info, size_t i) {
  return info.Length() > i && info[i].IsString() ? info[i].As<Napi::String>().Utf8Value()
                                                 : std::string();
}

// "MS_BIND|MS_REC" -> flags; false (with the JS exception set) on an unknown name.
bool ParseFlags(Napi::Env env, const std::string& fl, const std::string& target,
                const std::string& step, unsigned long* f) {
  if (flags::parse_mount(fl, f)) return true;
  errors::Throw(env, {step, "mount", EINVAL, target, "unknown mount flag in " + fl});
  return false;
}

// mount(source, target, fstype, flags, data, step)
Napi::Value Mount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string src = Str(info, 0), target = Str(info, 1), fstype = Str(info, 2), fl = Str(info, 3),
              data = Str(info, 4), step = Str(info, 5);
  unsigned long f = 0;
  if (!ParseFlags(env, fl, target, step, &f)) return env.Undefined();
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

// mountLoop(image, target, fstype, flags, data, step) -> "/dev/loopN": mounts
// a filesystem image through a free loop device set up with AUTOCLEAR, so the
// device detaches itself once the mount is gone (teardown only unmounts) and
// a failed mount leaves no device behind (our close is the last reference).
// Another process can take the same free device between GET_FREE and
// CONFIGURE: EBUSY, so ask again (util-linux does the same).
Napi::Value MountLoop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string image = Str(info, 0), target = Str(info, 1), fstype = Str(info, 2), fl = Str(info, 3),
              data = Str(info, 4), step = Str(info, 5);
  unsigned long f = 0;
  if (!ParseFlags(env, fl, target, step, &f)) return env.Undefined();
  int file = open(image.c_str(), O_RDWR | O_CLOEXEC);
  if (file < 0) {
    errors::Throw(env, {step, "open", errno, image, "the disk image"});
    return env.Undefined();
  }
  int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl < 0) {
    int e = errno;
    close(file);
    errors::Throw(env, {step, "open", e, "/dev/loop-control", "is the loop module loaded?"});
    return env.Undefined();
  }
  std::string dev;
  int fd = -1;
  for (int attempt = 0; attempt < 32 && fd < 0; ++attempt) {
    int n = ioctl(ctl, LOOP_CTL_GET_FREE);
    if (n < 0) {
      int e = errno;
      close(ctl), close(file);
      errors::Throw(env, {step, "ioctl", e, "/dev/loop-control", "LOOP_CTL_GET_FREE"});
      return env.Undefined();
    }
    dev = "/dev/loop" + std::to_string(n);
    int d = open(dev.c_str(), O_RDWR | O_CLOEXEC);
    if (d < 0) {
      int e = errno;
      close(ctl), close(file);
      errors::Throw(env, {step, "open", e, dev, ""});
      return env.Undefined();
    }
    struct loop_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.fd = static_cast<__u32>(file);
    // 4 KiB blocks and direct I/O: no second copy of every block in the
    // backing file's page cache (the kernel falls back to buffered I/O
    // where the backing filesystem cannot do direct I/O).
    cfg.block_size = 4096;
    cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
    strncpy(reinterpret_cast<char*>(cfg.info.lo_file_name), image.c_str(), LO_NAME_SIZE - 1);
    if (ioctl(d, LOOP_CONFIGURE, &cfg) == 0) {
      fd = d;
      break;
    }
    int e = errno;
    close(d);
    if (e != EBUSY) {
      close(ctl), close(file);
      errors::Throw(env, {step, "ioctl", e, dev, "LOOP_CONFIGURE " + image});
      return env.Undefined();
    }
  }
  close(ctl);
  close(file);
  if (fd < 0) {
    errors::Throw(env, {step, "ioctl", EBUSY, "/dev/loop-control", "no free loop device"});
    return env.Undefined();
  }
  int rc = ::mount(dev.c_str(), target.c_str(), fstype.c_str(), f,
                   data.empty() ? nullptr : data.c_str());
  int e = errno;
  close(fd);  // the mount holds the device now; after a failure this frees it
  if (rc != 0) {
    std::string detail = dev + " (" + image + ") fstype=" + fstype + " flags=" + fl;
    if (!data.empty()) detail += " data=" + data;
    errors::Throw(env, {step, "mount", e, target, detail});
    return env.Undefined();
  }
  return Napi::String::New(env, dev);
}

// copySparse(src, dst, step): a new file `dst` (0600, must not exist) with
// `src`'s size and data, holes kept as holes: SEEK_DATA/SEEK_HOLE find the
// data, copy_file_range moves it in the kernel. A formatted 1 GiB session
// disk is ~0.6 MB of data in a few extents, so this is ~1 ms where mke2fs
// takes ~7 (and a spawn).
Napi::Value CopySparse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string src = Str(info, 0), dst = Str(info, 1), step = Str(info, 2);
  int in = open(src.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    errors::Throw(env, {step, "open", errno, src, ""});
    return env.Undefined();
  }
  int out = open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out < 0) {
    int e = errno;
    close(in);
    errors::Throw(env, {step, "open", e, dst, "O_CREAT|O_EXCL"});
    return env.Undefined();
  }
  auto fail = [&](const char* sc, int e, const std::string& path) {
    close(in);
    close(out);
    unlink(dst.c_str());
    errors::Throw(env, {step, sc, e, path, "copying " + src});
    return env.Undefined();
  };
  off_t size = lseek(in, 0, SEEK_END);
  if (size < 0) return fail("lseek", errno, src);
  if (ftruncate(out, size) != 0) return fail("ftruncate", errno, dst);
  off_t off = 0;
  while (off < size) {
    off_t data = lseek(in, off, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole is left
      return fail("lseek", errno, src);
    }
    off_t hole = lseek(in, data, SEEK_HOLE);
    if (hole < 0) return fail("lseek", errno, src);
    loff_t from = data, to = data;
    while (from < hole) {
      ssize_t n = copy_file_range(in, &from, out, &to, static_cast<size_t>(hole - from), 0);
      if (n < 0) return fail("copy_file_range", errno, dst);
      if (n == 0) break;
    }
    off = hole;
  }
  close(in);
  if (close(out) != 0) {
    int e = errno;
    unlink(dst.c_str());
    errors::Throw(env, {step, "close", e, dst, ""});
  }
  return env.Undefined();
}

}  // namespace

void Register(Napi::Env env, Napi::Object exports) {
  exports.Set("mount", Napi::Function::New(env, Mount));
  exports.Set("umount", Napi::Function::New(env, Umount));
  exports.Set("mountLoop", Napi::Function::New(env, MountLoop));
  exports.Set("copySparse", Napi::Function::New(env, CopySparse));
}

}  // namespace mounts

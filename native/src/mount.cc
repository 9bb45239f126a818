#include "mount.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
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

// Runs `task` on a libuv worker thread and settles a promise with its
// result (a string, or undefined when empty) or its error record. For the
// calls that wait on a disk: an ext4 mount or unmount on a loop device with
// direct I/O flushes and commits a journal, 5-40 ms under load, which on the
// JS thread stalled every terminal of every student (a class herd of 100
// creates spent seconds of event loop in them). mount(2) and umount2(2) act
// on the host mount namespace, which every thread of Node shares: no thread
// changes a namespace here.
class TaskWorker : public Napi::AsyncWorker {
 public:
  using Task = std::function<bool(std::string* result, errors::Record* err)>;
  TaskWorker(Napi::Env env, Task task)
      : Napi::AsyncWorker(env),
        deferred_(Napi::Promise::Deferred::New(env)),
        task_(std::move(task)) {}

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override { ok_ = task_(&result_, &record_); }

  void OnOK() override {
    Napi::Env env = Env();
    if (!ok_) return deferred_.Reject(errors::Make(env, record_));
    deferred_.Resolve(result_.empty() ? env.Undefined() : Napi::String::New(env, result_));
  }

 private:
  Napi::Promise::Deferred deferred_;
  Task task_;
  std::string result_;
  errors::Record record_;
  bool ok_ = false;
};

Napi::Value Queue(Napi::Env env, TaskWorker::Task task) {
  auto* w = new TaskWorker(env, std::move(task));
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// umount(target, detach, step) -> Promise<void>: EINVAL (not a mount point)
// and ENOENT are reported like any other error; teardown decides what
// "already gone" means.
Napi::Value Umount(const Napi::CallbackInfo& info) {
  std::string target = Str(info, 0), step = Str(info, 2);
  bool detach = info.Length() > 1 && info[1].ToBoolean();
  return Queue(info.Env(), [=](std::string*, errors::Record* err) {
    if (::umount2(target.c_str(), detach ? MNT_DETACH : 0) == 0) return true;
    *err = {step, "umount2", errno, target, detach ? "MNT_DETACH" : ""};
    return false;
  });
}

// On a worker thread: `image` on a free loop device, set up with AUTOCLEAR,
// so the device detaches itself once nothing holds it: the mount once made
// (teardown only unmounts), or *fd_out until then (a failed or never-made
// mount leaves no device behind). Another process can take the same free
// device between GET_FREE and CONFIGURE: EBUSY, so ask again (util-linux
// does the same).
bool DoAttachLoop(const std::string& image, const std::string& step, int* fd_out,
                  std::string* dev_out, errors::Record* err) {
  int file = open(image.c_str(), O_RDWR | O_CLOEXEC);
  if (file < 0) {
    *err = {step, "open", errno, image, "the disk image"};
    return false;
  }
  int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl < 0) {
    *err = {step, "open", errno, "/dev/loop-control", "is the loop module loaded?"};
    close(file);
    return false;
  }
  std::string dev;
  int fd = -1;
  for (int attempt = 0; attempt < 32 && fd < 0; ++attempt) {
    int n = ioctl(ctl, LOOP_CTL_GET_FREE);
    if (n < 0) {
      *err = {step, "ioctl", errno, "/dev/loop-control", "LOOP_CTL_GET_FREE"};
      close(ctl), close(file);
      return false;
    }
    dev = "/dev/loop" + std::to_string(n);
    int d = open(dev.c_str(), O_RDWR | O_CLOEXEC);
    if (d < 0) {
      *err = {step, "open", errno, dev, ""};
      close(ctl), close(file);
      return false;
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
      *err = {step, "ioctl", e, dev, "LOOP_CONFIGURE " + image};
      close(ctl), close(file);
      return false;
    }
  }
  close(ctl);
  close(file);
  if (fd < 0) {
    *err = {step, "ioctl", EBUSY, "/dev/loop-control", "no free loop device"};
    return false;
  }
  *fd_out = fd;
  *dev_out = dev;
  return true;
}

// On a worker thread: mounts the attached loop device `dev` (held by `fd`,
// which is closed here either way: the mount holds the device from now on).
bool DoMountAttached(int fd, const std::string& dev, const std::string& target,
                     const std::string& fstype, unsigned long f, const std::string& fl,
                     const std::string& data, const std::string& step, errors::Record* err) {
  int rc = ::mount(dev.c_str(), target.c_str(), fstype.c_str(), f,
                   data.empty() ? nullptr : data.c_str());
  int e = errno;
  close(fd);  // the mount holds the device now; after a failure this frees it
  if (rc != 0) {
    std::string detail = dev + " fstype=" + fstype + " flags=" + fl;
    if (!data.empty()) detail += " data=" + data;
    *err = {step, "mount", e, target, detail};
    return false;
  }
  return true;
}

// The body of mountLoop: attach, then mount; the device path, or false and `err`.
bool DoMountLoop(const std::string& image, const std::string& target, const std::string& fstype,
                 unsigned long f, const std::string& fl, const std::string& data,
                 const std::string& step, std::string* dev_out, errors::Record* err) {
  int fd = -1;
  if (!DoAttachLoop(image, step, &fd, dev_out, err)) return false;
  if (DoMountAttached(fd, *dev_out, target, fstype, f, fl, data, step, err)) return true;
  err->detail += " (" + image + ")";
  return false;
}

// mountLoop(image, target, fstype, flags, data, step) -> Promise<"/dev/loopN">:
// mounts a filesystem image through a free loop device, off the JS thread.
// Unknown flag names throw at once.
Napi::Value MountLoop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string image = Str(info, 0), target = Str(info, 1), fstype = Str(info, 2), fl = Str(info, 3),
              data = Str(info, 4), step = Str(info, 5);
  unsigned long f = 0;
  if (!ParseFlags(env, fl, target, step, &f)) return env.Undefined();
  return Queue(env, [=](std::string* dev, errors::Record* err) {
    return DoMountLoop(image, target, fstype, f, fl, data, step, dev, err);
  });
}

// attachLoop(image, step) -> Promise<"<fd>">: `image` on a free loop device
// (as mountLoop does), held by the returned fd until mountDetached: a disk
// made ready ahead of its create. Closing the fd instead detaches it.
Napi::Value AttachLoop(const Napi::CallbackInfo& info) {
  std::string image = Str(info, 0), step = Str(info, 1);
  return Queue(info.Env(), [=](std::string* out, errors::Record* err) {
    int fd = -1;
    std::string dev;
    if (!DoAttachLoop(image, step, &fd, &dev, err)) return false;
    *out = std::to_string(fd);
    return true;
  });
}

// The new mount API (Linux >= 5.2), by number: glibc's and the kernel's
// headers for it clash. Values from <linux/mount.h>.
constexpr unsigned kFsopenCloexec = 0x1;
constexpr unsigned kFsconfigSetFlag = 0, kFsconfigSetString = 1, kFsconfigCmdCreate = 6;
constexpr unsigned kFsmountCloexec = 0x1;
constexpr unsigned kAttrRdonly = 0x1, kAttrNosuid = 0x2, kAttrNodev = 0x4, kAttrNoexec = 0x8;
constexpr unsigned kMoveMountFEmptyPath = 0x4;

// On a worker thread: `dev` (held by `fd`, closed whatever the outcome)
// mounted as a detached mount, in no mount namespace: a namespace another
// process creates meanwhile gets no copy of it, and it goes when its fd
// closes (a dead server's spare included). Options: "a,b=c" (flags and
// key=value); MS_RDONLY/NOSUID/NODEV/NOEXEC become mount attributes.
bool DoMountDetached(int fd, const std::string& dev, const std::string& fstype, unsigned long f,
                     const std::string& data, const std::string& step, int* mnt_out,
                     errors::Record* err) {
  int fs = static_cast<int>(syscall(SYS_fsopen, fstype.c_str(), kFsopenCloexec));
  if (fs < 0) {
    *err = {step, "fsopen", errno, dev, fstype};
    close(fd);
    return false;
  }
  auto fail = [&](const char* sc, int e, const std::string& detail) {
    close(fs);
    close(fd);
    *err = {step, sc, e, dev, detail};
    return false;
  };
  if (syscall(SYS_fsconfig, fs, kFsconfigSetString, "source", dev.c_str(), 0) != 0)
    return fail("fsconfig", errno, "source");
  size_t start = 0;
  while (start < data.size()) {
    size_t end = data.find(',', start);
    if (end == std::string::npos) end = data.size();
    std::string opt = data.substr(start, end - start);
    start = end + 1;
    if (opt.empty()) continue;
    size_t eq = opt.find('=');
    long rc = eq == std::string::npos
                  ? syscall(SYS_fsconfig, fs, kFsconfigSetFlag, opt.c_str(), nullptr, 0)
                  : syscall(SYS_fsconfig, fs, kFsconfigSetString, opt.substr(0, eq).c_str(),
                            opt.substr(eq + 1).c_str(), 0);
    if (rc != 0) return fail("fsconfig", errno, opt);
  }
  if (syscall(SYS_fsconfig, fs, kFsconfigCmdCreate, nullptr, nullptr, 0) != 0)
    return fail("fsconfig", errno, "FSCONFIG_CMD_CREATE " + fstype);
  unsigned attrs = ((f & MS_RDONLY) ? kAttrRdonly : 0) | ((f & MS_NOSUID) ? kAttrNosuid : 0) |
                   ((f & MS_NODEV) ? kAttrNodev : 0) | ((f & MS_NOEXEC) ? kAttrNoexec : 0);
  int mnt = static_cast<int>(syscall(SYS_fsmount, fs, kFsmountCloexec, attrs));
  if (mnt < 0) return fail("fsmount", errno, fstype);
  close(fs);
  close(fd);  // the superblock holds the device now
  *mnt_out = mnt;
  return true;
}

// mountDetached(fd, dev, fstype, flags, data, step) -> Promise<"<mount fd>">:
// a device from attachLoop (`dev`, held by `fd`, which is closed) mounted
// off the JS thread as a detached mount; moveMount places it, closing the
// fd drops it.
Napi::Value MountDetached(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd =
      info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1;
  std::string dev = Str(info, 1), fstype = Str(info, 2), fl = Str(info, 3), data = Str(info, 4),
              step = Str(info, 5);
  unsigned long f = 0;
  if (fd < 0) {
    errors::Throw(env, {step, "fsmount", EBADF, dev, "mountDetached needs the device's fd"});
    return env.Undefined();
  }
  if (!ParseFlags(env, fl, dev, step, &f)) {
    close(fd);
    return env.Undefined();
  }
  return Queue(env, [=](std::string* out, errors::Record* err) {
    int mnt = -1;
    if (!DoMountDetached(fd, dev, fstype, f, data, step, &mnt, err)) return false;
    *out = std::to_string(mnt);
    return true;
  });
}

// moveMount(mountFd, target, step): attaches a detached mount (mountDetached)
// at `target`, in this mount namespace. The fd stays open (the caller closes it).
Napi::Value MoveMount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int mnt =
      info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1;
  std::string target = Str(info, 1), step = Str(info, 2);
  if (syscall(SYS_move_mount, mnt, "", AT_FDCWD, target.c_str(), kMoveMountFEmptyPath) != 0)
    errors::Throw(env, {step, "move_mount", errno, target, "MOVE_MOUNT_F_EMPTY_PATH"});
  return env.Undefined();
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
  exports.Set("attachLoop", Napi::Function::New(env, AttachLoop));
  exports.Set("mountDetached", Napi::Function::New(env, MountDetached));
  exports.Set("moveMount", Napi::Function::New(env, MoveMount));
  exports.Set("copySparse", Napi::Function::New(env, CopySparse));
}

}  // namespace mounts

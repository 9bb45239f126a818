// `underlay-nsexec create`: runs the op list from server/sandbox/steps.ts.
//
// Three processes, in runc nsexec's staging (libcontainer/nsenter/nsexec.c):
//
//   host  - this process: host root, host namespaces. Forks `child`, writes
//           its uid/gid maps, builds the idmapped lower + overlay with the
//           child's user namespace, moves the child into its cgroups.
//   child - unshare(CLONE_NEWUSER) FIRST, alone, so every later namespace is
//           owned by the mapped user namespace; then waits for the host; then
//           setresuid(0) and unshares mnt/uts/ipc/net/cgroup/pid in one call.
//           The mount namespace is copied only now, after the host mounted the
//           overlay, so the sandbox sees it. A new pid namespace applies to
//           children only, hence the fork of `init`.
//   init  - PID 1 of the sandbox: builds the root, pivots, and then stays
//           as a tiny reaper that keeps the namespaces alive.
//
// The op list is a closed vocabulary (ops.h). spec::parse checks it whole
// before the first fork - names, argc, and which op may run in which stage,
// which follows from the boundary ops clone-userns, release-child, fork-init
// and init-loop - so each stage below only dispatches on ops::Kind.
// Failures become one ERR record on the status pipe (report.h) and the host
// stage forwards the first one to stdout for the addon.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ops.h"
#include "report.h"
#include "seccomp.h"
#include "spec.h"
#include "sys.h"

namespace create {
namespace {

using ops::Kind;
using spec::Op;

struct Ctx {
  pid_t child = -1;   // host pid of the user-namespace child
  pid_t init = -1;    // host pid of the sandbox init
  int status_w = -1;  // child/init -> host: PID/USERNS/OK/ERR lines
  int status_r = -1;
  // host -> child, one byte per release: start-child (maps written: the
  // child may begin its own ops), release-child (host mounts done), then
  // the attach (the child is in the session's cgroups). Without
  // start-child, release-child's byte is the first.
  int go_r = -1;
  int go_w = -1;
  bool child_started = false;  // start-child ran
  // clone-into-cgroup / init-into-cgroup: the cgroups (v2) the child and
  // init are born in (see fork_into), or empty.
  std::string clone_into;
  std::string init_into;
  // attach-child writes, done by a process of their own (see start_attacher).
  std::vector<std::string> attach;
  pid_t attacher = -1;
};

// With an await-scratch op, the server's end of the scratch gate (see
// spawn.cc): a byte once the session disk is mounted, EOF if it gave up.
constexpr int kScratchGateFd = 3;

// spec::parse guarantees the table's argc, so args[i] exists.
const char* arg(const Op& op, size_t i) { return op.args[i].c_str(); }

// An op the parser let into a stage that has no case for it: the table in
// ops.cc and the switches below disagree.
[[noreturn]] void not_in_stage(const Op& op, const char* stage) {
  report::die(op.step.c_str(), "", EINVAL, "",
              ("internal: ops[" + std::to_string(op.index) + "] '" + op.name +
               "' has no case in the " + stage + " stage")
                  .c_str());
}

bool write_file(const char* path, const std::string& content) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = write(fd, content.data(), content.size());
  int saved = errno;
  close(fd);
  errno = saved;
  return n == static_cast<ssize_t>(content.size());
}

// ---- ops several stages share (ops.cc says which) -------------------------

// Returns false for an op that is not one of these; the caller's stage
// decides what that means.
bool run_common(const Op& op) {
  const char* step = op.step.c_str();
  switch (op.kind) {
    case Kind::kMount: {
      // mount SOURCE TARGET FSTYPE FLAGS DATA (empty strings mean NULL);
      // FLAGS was resolved to op.mount_flags by the parser.
      const char* src = op.args[0].empty() ? nullptr : arg(op, 0);
      const char* fstype = op.args[2].empty() ? nullptr : arg(op, 2);
      const char* data = op.args[4].empty() ? nullptr : arg(op, 4);
      if (mount(src, arg(op, 1), fstype, op.mount_flags, data) != 0) {
        std::string detail = "fstype=" + op.args[2] + " flags=" + op.args[3];
        if (!op.args[4].empty()) detail += " data=" + op.args[4];
        report::die(step, "mount", errno, arg(op, 1), detail.c_str());
      }
      return true;
    }
    case Kind::kMkdir: {
      // mkdir PATH MODE(octal); an existing directory is fine
      mode_t mode = static_cast<mode_t>(strtol(arg(op, 1), nullptr, 8));
      if (mkdir(arg(op, 0), mode) != 0 && errno != EEXIST)
        report::die(step, "mkdir", errno, arg(op, 0));
      return true;
    }
    case Kind::kTouch: {
      // touch PATH: an empty file to bind-mount a device node or mask onto
      int fd = open(arg(op, 0), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      if (fd < 0) report::die(step, "open", errno, arg(op, 0));
      close(fd);
      return true;
    }
    case Kind::kSymlink:  // symlink TARGET LINKPATH
      if (symlink(arg(op, 0), arg(op, 1)) != 0 && errno != EEXIST)
        report::die(step, "symlink", errno, arg(op, 1));
      return true;
    case Kind::kWrite:  // write PATH CONTENT
      if (!write_file(arg(op, 0), op.args[1])) report::die(step, "write", errno, arg(op, 0));
      return true;
    case Kind::kChown:  // chown PATH UID GID
      if (lchown(arg(op, 0), static_cast<uid_t>(atol(arg(op, 1))),
                 static_cast<gid_t>(atol(arg(op, 2)))) != 0)
        report::die(step, "chown", errno, arg(op, 0));
      return true;
    default:
      return false;
  }
}

// ---- host stage ------------------------------------------------------------

// Reads one '\n'-terminated line from the status pipe, with a deadline so a
// wedged child can never hang the server's create call.
bool read_status_line(Ctx* c, std::string* out, int timeout_ms) {
  out->clear();
  for (;;) {
    struct pollfd p = {c->status_r, POLLIN, 0};
    int r = poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return false;
    char ch;
    ssize_t n = read(c->status_r, &ch, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    if (ch == '\n') return true;
    out->push_back(ch);
    if (out->size() > 4096) return false;
  }
}

void kill_started(Ctx* c) {
  if (c->attacher > 0) kill(c->attacher, SIGKILL);
  if (c->init > 0) kill(c->init, SIGKILL);
  if (c->child > 0) kill(c->child, SIGKILL);
  // Ours to reap (init is the child's, re-parented to the server, which
  // reaps it): gone with us, they would be the server's zombies.
  for (pid_t p : {c->attacher, c->child}) {
    while (p > 0 && waitpid(p, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
}

// Forward an ERR line to stdout (the addon) and fail.
[[noreturn]] void host_fail_with(Ctx* c, const std::string& line) {
  kill_started(c);
  report::set_fd(1);
  report::line("%s", line.c_str());
  _exit(1);
}

[[noreturn]] void host_die(Ctx* c, const char* step, const char* sc, int err, const char* path,
                           const char* detail = "") {
  kill_started(c);
  report::set_fd(1);
  report::die(step, sc, err, path, detail);
}

void host_expect_line(Ctx* c, const char* step, const char* prefix, std::string* line) {
  if (!read_status_line(c, line, 10000)) {
    // EOF or timeout: the sandbox side died without a record, or hung.
    host_die(c, step, "", ETIMEDOUT, "", "sandbox process exited or hung before reporting");
  }
  if (line->rfind("ERR\t", 0) == 0) host_fail_with(c, *line);
  if (line->rfind(prefix, 0) != 0)
    host_die(c, step, "", EPROTO, "", ("unexpected status: " + *line).c_str());
}

void idmap_mount(Ctx* c, const Op& op) {
  // idmap-mount SOURCE TARGET: a read-only, nodev view of SOURCE in which
  // on-disk ids 0..65535 appear shifted by the child's uid_map. One base
  // image thus serves every session without chowned copies (kernel >= 5.19
  // for overlay on idmapped layers; verified on 6.18). open_tree+move_mount
  // is the only way to attach an idmapped mount; mount(2) cannot do it.
  const char* step = op.step.c_str();
  int tree = sys::open_tree(AT_FDCWD, arg(op, 0), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) host_die(c, step, "open_tree", errno, arg(op, 0));
  char ns[64];
  snprintf(ns, sizeof ns, "/proc/%d/ns/user", c->child);
  int userns = open(ns, O_RDONLY | O_CLOEXEC);
  if (userns < 0) host_die(c, step, "open", errno, ns);
  struct mount_attr attr = {};
  attr.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV;
  attr.userns_fd = static_cast<uint64_t>(userns);
  // Not a peer of the host's mount (shared under systemd): no host mount
  // event reaches the sandbox through it, none of the sandbox's leaves.
  attr.propagation = MS_PRIVATE;
  if (sys::mount_setattr(tree, "", AT_EMPTY_PATH, &attr) != 0)
    host_die(c, step, "mount_setattr", errno, arg(op, 0),
             "MOUNT_ATTR_IDMAP|MOUNT_ATTR_RDONLY|MOUNT_ATTR_NODEV");
  if (sys::move_mount(tree, "", AT_FDCWD, arg(op, 1), MOVE_MOUNT_F_EMPTY_PATH) != 0)
    host_die(c, step, "move_mount", errno, arg(op, 1));
  close(tree);
  close(userns);
}

// Moving the child into the session's cgroups (v1: one cgroup.procs per
// hierarchy) is the slowest part of a create: the first migration after a
// quiet spell waits for an RCU grace period (cgroup_threadgroup_rwsem's
// writer side), 6-8 ms on a small VM. A process of its own does the writes,
// so the wait overlaps the maps, the mounts and the child's first ops; the
// child waits for it (await-attach) before it unshares its cgroup namespace,
// whose root must be the session's cgroup.
void start_attacher(Ctx* c) {
  if (c->attach.empty() || c->attacher > 0) return;
  pid_t pid = fork();
  if (pid < 0) host_die(c, "cgroup", "fork", errno, "");
  if (pid == 0) {
    const std::string self = std::to_string(c->child);
    for (const std::string& procs : c->attach) {
      if (!write_file(procs.c_str(), self)) _exit(errno > 0 && errno < 256 ? errno : EIO);
    }
    _exit(0);
  }
  c->attacher = pid;
}

// The attacher's result; dies with its errno (the paths are the attach list).
void finish_attacher(Ctx* c) {
  if (c->attacher <= 0) return;
  int st = 0;
  while (waitpid(c->attacher, &st, 0) < 0 && errno == EINTR) {
  }
  c->attacher = -1;
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    const int err = WIFEXITED(st) ? WEXITSTATUS(st) : EINTR;
    host_die(c, "cgroup", "write", err, c->attach.front().c_str(),
             "moving the sandbox into its cgroups (one of the attach-child files)");
  }
}

// One byte on the go pipe (see Ctx). A child that already failed has closed
// its end (EPIPE; SIGPIPE is ignored in this stage): its own report, on the
// status pipe, is the error to forward.
void host_release(Ctx* c, const char* step, char byte) {
  ssize_t n;
  while ((n = write(c->go_w, &byte, 1)) < 0 && errno == EINTR) {
  }
  if (n == 1) return;
  const int err = errno;
  std::string line;
  if (err == EPIPE && read_status_line(c, &line, 1000) && line.rfind("ERR\t", 0) == 0)
    host_fail_with(c, line);
  host_die(c, step, "write", err, "", "go pipe to the user-namespace child");
}

// Host ops, before and after clone-userns; the parser keeps the ones that
// need the child (write-child-proc, attach-child, idmap-mount) after it.
void run_host_op(Ctx* c, const Op& op) {
  const char* step = op.step.c_str();
  if (op.kind != Kind::kAttachChild) start_attacher(c);
  switch (op.kind) {
    case Kind::kWriteChildProc: {
      // write-child-proc FILE CONTENT: /proc/<child>/{uid_map,gid_map,setgroups}.
      // Host root holds CAP_SETUID/CAP_SETGID in the parent namespace, so it can
      // map a whole range without newuidmap. Host uid 0 is never in the map.
      char path[96];
      snprintf(path, sizeof path, "/proc/%d/%s", c->child, arg(op, 0));
      if (!write_file(path, op.args[1])) host_die(c, step, "write", errno, path, arg(op, 1));
      return;
    }
    case Kind::kAttachChild:
      // attach-child CGROUP_PROCS: collected; start_attacher writes them.
      c->attach.push_back(op.args[0]);
      return;
    case Kind::kIdmapMount:
      idmap_mount(c, op);
      return;
    case Kind::kCloneIntoCgroup:
      // clone-into-cgroup DIR: see fork_into.
      c->clone_into = op.args[0];
      return;
    case Kind::kStartChild:
      // The child runs its ops up to await-host meanwhile: what needs only
      // its mapped user namespace (the nested one, the namespaces other than
      // mount) overlaps the host's wait for the disk and its mounts.
      host_release(c, step, 's');
      c->child_started = true;
      return;
    case Kind::kAwaitScratch: {
      // The server mounts the session disk while this helper starts, forks
      // the child and maps it; the ops after this one need the disk. One
      // byte on the gate = mounted; EOF = the server gave up (its own error
      // is the one reported), so nothing is left to do but fail.
      char b;
      ssize_t n;
      while ((n = read(kScratchGateFd, &b, 1)) < 0 && errno == EINTR) {
      }
      const int err = n < 0 ? errno : ECANCELED;
      close(kScratchGateFd);
      if (n != 1) host_die(c, step, "read", err, "", "the server stopped this create");
      return;
    }
    default:
      // run_common exits on failure without killing the child; the child then
      // reads EOF on the go pipe (or gets PR_SET_PDEATHSIG) and exits itself.
      report::set_fd(1);
      if (!run_common(op)) not_in_stage(op, "host");
      return;
  }
}

// Forks a process born in cgroup (v2) directory `dir`, or a plain fork()
// for an empty `dir`. clone3(CLONE_INTO_CGROUP) takes cgroup_mutex and
// cgroup_threadgroup_rwsem only for reading, as a fork does, where a write
// to cgroup.procs takes the rwsem for writing and, after a quiet spell,
// waits an RCU grace period (most of a create on a kernel without
// favordynmods). It still queues behind such a write on cgroup_mutex (a
// terminal joining a sandbox at the same moment). Used for the user-namespace
// child (clone-into-cgroup: the session cgroup) and for init
// (init-into-cgroup: its leaf). *born_in tells whether it worked: kernels
// before 5.7 lack the flag, and the caller then moves the process itself.
pid_t fork_into(const std::string& dir, bool* born_in) {
  *born_in = false;
  if (dir.empty()) return fork();
  int fd = open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) report::die("cgroup", "open", errno, dir.c_str());
  sys::CloneArgs args;
  memset(&args, 0, sizeof args);
  args.flags = sys::kCloneIntoCgroup;
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<uint64_t>(fd);
  // A raw clone3 without CLONE_VM is a fork to the kernel; libc's fork
  // handlers do not run, and this single-threaded helper needs none. Both
  // sides only make syscalls and _exit (never raise/abort, whose cached
  // thread id would be the parent's in the child).
  long pid = sys::clone3(&args);
  const int err = errno;
  close(fd);
  if (pid >= 0) {
    *born_in = true;
    return static_cast<pid_t>(pid);
  }
  // ENOSYS/E2BIG/EINVAL: a kernel without clone3 or the flag; EPERM: a
  // seccomp profile of an outer container that denies clone3. A real
  // permission problem is EACCES/ENOENT, and the write would fail the same.
  if (err != ENOSYS && err != EINVAL && err != E2BIG && err != EPERM)
    report::die("cgroup", "clone3", err, dir.c_str(), "CLONE_INTO_CGROUP");
  return fork();
}

// ---- child stage -------------------------------------------------------------

void child_wait_go(Ctx* c) {
  char b;
  for (;;) {
    ssize_t n = read(c->go_r, &b, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n != 1) _exit(125);  // the host gave up; nothing to report
    return;
  }
}

// ---- init stage --------------------------------------------------------------

void mask_path(const Op& op) {
  // mask PATH: Docker's maskedPaths. Applied by init, i.e. inside the
  // sandbox's own user namespace, so the masks are NOT locked: a locked
  // overmount on /proc makes the kernel refuse every nested procfs mount
  // (mnt_already_visible), which would break `unshare --pid --fork
  // --mount-proc`, the heart of the pid-namespace lab (docs/sandbox.md#proc-masks-are-unlocked).
  // The kernel itself still denies the dangerous files to a userns root.
  struct stat st;
  if (stat(arg(op, 0), &st) != 0) return;  // absent on this kernel: nothing to hide
  int r = S_ISDIR(st.st_mode) ? mount("tmpfs", arg(op, 0), "tmpfs",
                                      MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
                              : mount("/dev/null", arg(op, 0), nullptr, MS_BIND, nullptr);
  if (r != 0) report::die(op.step.c_str(), "mount", errno, arg(op, 0), "mask");
}

void bind_readonly(const Op& op) {
  // bind-ro PATH: bind PATH onto itself and remount read-only. A remount in a
  // user namespace must keep the flags it inherited locked (nosuid, nodev,
  // noexec), or the kernel answers EPERM; statvfs tells which those are.
  const char* p = arg(op, 0);
  struct stat st;
  if (stat(p, &st) != 0) return;
  if (mount(p, p, nullptr, MS_BIND | MS_REC, nullptr) != 0)
    report::die(op.step.c_str(), "mount", errno, p, "MS_BIND|MS_REC");
  struct statvfs sv;
  unsigned long keep = 0;
  if (statvfs(p, &sv) == 0) {
    if (sv.f_flag & ST_NOSUID) keep |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV) keep |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC) keep |= MS_NOEXEC;
  }
  if (mount(nullptr, p, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY | keep, nullptr) != 0)
    report::die(op.step.c_str(), "mount", errno, p, "MS_BIND|MS_REMOUNT|MS_RDONLY");
}

void pivot_root(const Op& op) {
  // pivot-root NEWROOT: pivot_root(".", ".") then detach the old root, the
  // trick runc took from LXC: no put_old directory is needed, and the old
  // root (all host mounts) vanishes from this namespace. NEWROOT must be a
  // mount of its own in this namespace - the host's overlay arrives here
  // MNT_LOCKED and pivot_root refuses a locked new_root with EINVAL, hence
  // the self-bind steps.ts puts right before this op.
  const char* step = op.step.c_str();
  if (chdir(arg(op, 0)) != 0) report::die(step, "chdir", errno, arg(op, 0));
  if (sys::pivot_root(".", ".") != 0) report::die(step, "pivot_root", errno, arg(op, 0));
  // Make the old root a slave before detaching, so the unmount cannot
  // propagate anywhere (runc pivotRoot).
  if (mount(nullptr, ".", nullptr, MS_SLAVE | MS_REC, nullptr) != 0)
    report::die(step, "mount", errno, ".", "MS_SLAVE|MS_REC");
  if (umount2(".", MNT_DETACH) != 0) report::die(step, "umount2", errno, ".", "MNT_DETACH");
  if (chdir("/") != 0) report::die(step, "chdir", errno, "/");
}

void loopback_up(const Op& op) {
  // A new network namespace has only `lo`, and it is down.
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) report::die(op.step.c_str(), "socket", errno, "lo");
  struct ifreq ifr = {};
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0)
    report::die(op.step.c_str(), "ioctl", errno, "lo", "SIOCGIFFLAGS");
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
  if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0)
    report::die(op.step.c_str(), "ioctl", errno, "lo", "SIOCSIFFLAGS");
  close(s);
}

// argv of this process, so init can rename itself in `ps` (the host path of
// the helper is none of the sandbox's business).
char** g_argv = nullptr;
int g_argc = 0;

void rename_argv(const char* name) {
  if (!g_argv || g_argc < 1) return;
  char* start = g_argv[0];
  char* end = g_argv[g_argc - 1] + strlen(g_argv[g_argc - 1]);
  size_t room = static_cast<size_t>(end - start);
  memset(start, 0, room);
  strncpy(start, name, room);
}

[[noreturn]] void init_loop(Ctx* c) {
  // The sandbox is ready. Report, then shed every fd (the host may never
  // leak an object into the sandbox through init) and reap forever. Signals
  // other than SIGCHLD keep their default dispositions: for a pid-namespace
  // init the kernel drops those from inside the namespace, so a student
  // cannot kill the sandbox's keeper; the host ends it with SIGKILL.
  report::line("OK %d", getpid());
  sys::close_range(0, ~0U, 0);
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    if (null > 2) close(null);
  }
  setsid();
  prctl(PR_SET_NAME, "underlay-init", 0, 0, 0);
  rename_argv("underlay-init");
  (void)c;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  for (;;) {
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    siginfo_t info;
    sigwaitinfo(&set, &info);
  }
}

void run_init_op(const Op& op) {
  const char* step = op.step.c_str();
  switch (op.kind) {
    case Kind::kMask:
      return mask_path(op);
    case Kind::kBindRo:
      return bind_readonly(op);
    case Kind::kPivotRoot:
      return pivot_root(op);
    case Kind::kLoopbackUp:
      return loopback_up(op);
    case Kind::kSethostname:
      if (sethostname(arg(op, 0), op.args[0].size()) != 0)
        report::die(step, "sethostname", errno, "", arg(op, 0));
      return;
    case Kind::kSeccomp:
      // The same filter every joined process gets. Last before init-loop:
      // init itself is reachable by ptrace from sandbox root (it is dumpable,
      // see below), so an unfiltered init would run any syscall for them.
      return seccomp::install(step);
    case Kind::kSetDumpable:
      // Changing credentials reset `dumpable` to fs.suid_dumpable (0), which
      // would make /proc/1/* owned by the unmapped host root: checks and
      // students could not even readlink /proc/1/ns/*. init holds no secret
      // (a fork of this small helper, all fds closed), so dumpable is safe.
      if (prctl(PR_SET_DUMPABLE, atol(arg(op, 0)), 0, 0, 0) != 0)
        report::die(step, "prctl", errno, "", "PR_SET_DUMPABLE");
      return;
    default:
      if (!run_common(op)) not_in_stage(op, "sandbox init");
      return;
  }
}

// nest-userns MAP: a user namespace inside the current one, mapped with MAP
// (ids of the current namespace) for uids and gids. The process itself may
// not write a full range into its new namespace's maps (that needs
// CAP_SETUID in the parent namespace), so a helper forked first, still in
// the parent and its root, writes them once the new namespace exists. The
// limits the caller wrote into the parent's /proc/sys/user before this then
// cap everything made below, and nobody below can change them.
void nest_userns(const Op& op) {
  const char* step = op.step.c_str();
  // The uid change made us non-dumpable, which makes our /proc files host
  // root's: the mapper (root of this namespace only) could not open our maps.
  // Nothing else lives in this namespace yet.
  if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) report::die(step, "prctl", errno, "", "DUMPABLE");
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) report::die(step, "pipe2", errno, "");
  const pid_t self = getpid();
  pid_t mapper = fork();
  if (mapper < 0) report::die(step, "fork", errno, "");
  if (mapper == 0) {
    close(ready[1]);
    char b;
    ssize_t n;
    while ((n = read(ready[0], &b, 1)) < 0 && errno == EINTR) {
    }
    if (n != 1) _exit(2);  // the parent failed to unshare: it reports that
    for (const char* f : {"uid_map", "gid_map"}) {
      std::string path = "/proc/" + std::to_string(self) + "/" + f;
      if (!write_file(path.c_str(), op.args[0])) report::die(step, "write", errno, path.c_str());
    }
    _exit(0);
  }
  close(ready[0]);
  if (unshare(CLONE_NEWUSER) != 0) report::die(step, "unshare", errno, "", "CLONE_NEWUSER");
  if (write(ready[1], "u", 1) != 1) report::die(step, "write", errno, "", "mapper pipe");
  close(ready[1]);
  int st = 0;
  while (waitpid(mapper, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    report::die(step, "waitpid", ECHILD, "", "the map writer failed (its report came first)");
}

void run_child_op(Ctx* c, const Op& op) {
  const char* step = op.step.c_str();
  switch (op.kind) {
    case Kind::kSetids: {
      // setids UID GID: become the namespace's root (or UID). Drop the host's
      // supplementary groups first; they would otherwise show up as nogroup.
      gid_t g = static_cast<gid_t>(atol(arg(op, 1)));
      uid_t u = static_cast<uid_t>(atol(arg(op, 0)));
      if (setgroups(0, nullptr) != 0) report::die(step, "setgroups", errno, "");
      if (setresgid(g, g, g) != 0) report::die(step, "setresgid", errno, "");
      if (setresuid(u, u, u) != 0) report::die(step, "setresuid", errno, "");
      return;
    }
    case Kind::kUnshare:
      // CLONE_* names resolved to op.clone_flags by the parser.
      if (unshare(op.clone_flags) != 0) report::die(step, "unshare", errno, "", arg(op, 0));
      return;
    case Kind::kNestUserns:
      nest_userns(op);
      return;
    case Kind::kAwaitHost:
      // The host's mounts (the overlay) are done: a mount namespace copied
      // from here on holds them.
      child_wait_go(c);
      return;
    case Kind::kAwaitAttach:
      child_wait_go(c);
      return;
    case Kind::kInitIntoCgroup:
      // init-into-cgroup DIR: fork-init forks init into DIR (see fork_into).
      c->init_into = op.args[0];
      return;
    default:
      if (!run_common(op)) not_in_stage(op, "user-namespace child");
      return;
  }
}

}  // namespace

int run(int argc, char** argv) {
  g_argc = argc;
  g_argv = argv;
  std::string buf;
  spec::Spec sp;
  std::string err;
  report::set_fd(1);
  if (!spec::read_all(0, &buf)) report::die("clone", "read", errno, "stdin", "spec");
  // The whole list is checked here, before the first fork: a bad spec never
  // leaves a half-built sandbox behind. Its failure belongs to `clone`, the
  // step of the helper run as a whole; the detail names the op and its step.
  if (!spec::parse(buf, &sp, &err)) report::die("clone", "", EINVAL, "", err.c_str());
  const std::vector<Op>& ops = sp.ops;

  Ctx c;
  bool gated = false;
  bool awaits_attach = false;
  for (const Op& op : ops) {
    gated = gated || op.kind == Kind::kAwaitScratch;
    awaits_attach = awaits_attach || op.kind == Kind::kAwaitAttach;
  }
  // Checked before anything opens an fd that could take the number.
  if (gated) {
    struct stat st;
    const int err = fstat(kScratchGateFd, &st) != 0 ? errno : S_ISFIFO(st.st_mode) ? 0 : EBADF;
    if (err != 0)
      report::die("clone", "fstat", err, "", "await-scratch needs the scratch gate on fd 3");
  }
  // Host ops before the clone (none in today's steps.ts, but allowed).
  for (size_t i = 0; i < sp.clone_userns; ++i) run_host_op(&c, ops[i]);
  const Op& clone_op = ops[sp.clone_userns];

  int status[2], go[2];
  if (pipe2(status, O_CLOEXEC) != 0 || pipe2(go, O_CLOEXEC) != 0)
    report::die(clone_op.step.c_str(), "pipe2", errno, "");
  c.status_r = status[0];
  c.status_w = status[1];
  c.go_r = go[0];
  c.go_w = go[1];

  bool born_in = false;
  pid_t child = fork_into(c.clone_into, &born_in);
  if (child < 0) report::die(clone_op.step.c_str(), "fork", errno, "");
  if (!born_in && !c.clone_into.empty()) c.attach.push_back(c.clone_into + "/cgroup.procs");
  if (child == 0) {
    // ---- child ----
    close(c.status_r);
    close(c.go_w);
    if (gated) close(kScratchGateFd);  // the host stage's alone
    report::set_fd(c.status_w);
    // Become the session's host uid/gid BEFORE creating the user namespace:
    // the namespace's owner is the creator's euid, and the kernel charges
    // the per-user counts (user.max_*_namespaces, inotify instances, ...)
    // of everything made inside to the owner at the host level. Owned by
    // host root, one sandbox could exhaust root's counts for the whole host.
    const char* cstep = clone_op.step.c_str();
    const gid_t g = static_cast<gid_t>(strtoul(arg(clone_op, 1), nullptr, 10));
    const uid_t u = static_cast<uid_t>(strtoul(arg(clone_op, 0), nullptr, 10));
    // It keeps CAP_SYS_ADMIN (only that) across the uid change: hosts that
    // restrict *unprivileged* user namespaces (Ubuntu's AppArmor
    // apparmor_restrict_unprivileged_userns, Debian's unprivileged_userns_clone=0)
    // must still see a privileged creation, as when host root made it.
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0)
      report::die(cstep, "prctl", errno, "", "PR_SET_KEEPCAPS");
    if (setgroups(0, nullptr) != 0) report::die(cstep, "setgroups", errno, "");
    if (setresgid(g, g, g) != 0) report::die(cstep, "setresgid", errno, "");
    if (setresuid(u, u, u) != 0) report::die(cstep, "setresuid", errno, "");
    __user_cap_header_struct caph = {_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct capd[2] = {};
    capd[0].permitted = capd[0].effective = 1u << CAP_SYS_ADMIN;
    if (syscall(SYS_capset, &caph, capd) != 0)
      report::die(cstep, "capset", errno, "", "CAP_SYS_ADMIN");
    // Die with the host stage until the sandbox is complete; cleared in init.
    // (Set after the uid change, which clears it.)
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (unshare(CLONE_NEWUSER) != 0)
      report::die(clone_op.step.c_str(), "unshare", errno, "", "CLONE_NEWUSER");
    // From here its capabilities count only in the new namespace: none are
    // left on the host.
    report::line("USERNS");
    child_wait_go(&c);
    for (size_t j = sp.release_child + 1; j < sp.fork_init; ++j) run_child_op(&c, ops[j]);
    const Op& fork_op = ops[sp.fork_init];
    // The host reads "PID n" (from this stage) before "OK" (from init), but
    // both write the same pipe: under load init could finish its ops and
    // report first (seen as EPROTO "unexpected status: OK 1"). So init
    // reports only after this stage has written PID and exited (EOF here).
    int order[2];
    if (pipe2(order, O_CLOEXEC) != 0) report::die(fork_op.step.c_str(), "pipe2", errno, "");
    bool init_born_in = false;
    pid_t init = fork_into(c.init_into, &init_born_in);
    if (init < 0) report::die(fork_op.step.c_str(), "fork", errno, "");
    if (init > 0) {
      report::line("PID %d", init);
      _exit(0);  // closes order[1]
    }
    // ---- init (pid 1 of the new pid namespace) ----
    // The parent (child stage) exits right away; init must not die with it.
    prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
    close(order[1]);
    if (!init_born_in && !c.init_into.empty()) {
      const std::string procs = c.init_into + "/cgroup.procs";
      if (!write_file(procs.c_str(), "0")) report::die("cgroup", "write", errno, procs.c_str());
    }
    for (size_t j = sp.fork_init + 1; j < sp.init_loop; ++j) run_init_op(ops[j]);
    char b;
    while (read(order[0], &b, 1) < 0 && errno == EINTR) {
    }
    close(order[0]);
    init_loop(&c);
  }

  // ---- host ----
  c.child = child;
  // A child that failed closes the go pipe; writing to it then must be an
  // error we can report (host_release), not a silent death by SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  close(c.status_w);
  close(c.go_r);
  std::string line;
  host_expect_line(&c, clone_op.step.c_str(), "USERNS", &line);
  for (size_t i = sp.clone_userns + 1; i < sp.release_child; ++i) run_host_op(&c, ops[i]);
  const Op& release_op = ops[sp.release_child];
  start_attacher(&c);
  host_release(&c, release_op.step.c_str(), c.child_started ? 'm' : 'g');
  // The child awaits the attach even when it was born in its cgroup
  // (clone-into-cgroup): the same op list serves both ways.
  if (!c.attach.empty() || awaits_attach) {
    finish_attacher(&c);
    host_release(&c, "cgroup", 'a');
  }
  host_expect_line(&c, release_op.step.c_str(), "PID ", &line);
  c.init = static_cast<pid_t>(atol(line.c_str() + 4));
  int wst = 0;
  while (waitpid(c.child, &wst, 0) < 0 && errno == EINTR) {
  }
  c.child = -1;
  host_expect_line(&c, ops[sp.init_loop].step.c_str(), "OK ", &line);
  report::line("OK %d", c.init);
  return 0;
}

}  // namespace create

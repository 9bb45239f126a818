// `underlay-nsexec join`: enter a running sandbox and exec a command in it,
// the way `runc exec` / `nsenter` do, for terminals, checks and
// `underlay sandbox run`.
//
//   underlay-nsexec join --pid N --userns-ino N [--cgroup FILE]... [--uid N]
//                        [--gid N] [--cwd DIR [--cwd-fallback DIR]] [--env K=V]...
//                        [--setsid] [--no-seccomp] [--nproc N]
//                        [--pty COLS ROWS --console-fd N --console-ino INO]
//                        [--tool-tree HOSTDIR DIR]... [--view-bind PATH]...
//                        [--view-mkdir DIR]... [--view-mount FSTYPE SOURCE DIR DATA]...
//                        [--view-symlink TARGET PATH]... -- ARGV...
//
// --nproc N: RLIMIT_NPROC (soft and hard) of the command, set while still
// host root; sandbox root cannot raise a hard limit (that takes
// CAP_SYS_RESOURCE in the initial user namespace). The kernel checks it at
// the start of fork, before the parent's page tables are copied; the pids
// controller refuses a fork only at its end. Policy (the value) is the
// caller's.
//
// --tool-tree, --view-*: the command runs in a root of its own
// (docs/sandbox.md#trusted-checks): a fresh tmpfs holding each HOSTDIR
// (opened on the host before entering the sandbox; read-only, nosuid,
// nodev) at DIR, each of the sandbox's own PATHs (as a recursive clone, at
// the same place), and a fresh /proc of the sandbox's pid namespace; then
// pivot_root into it and the view's mkdirs, mounts and symlinks, in order.
// Nothing is placed by resolving a path the student controls after the
// fact: every target lies in the new tmpfs, reached from its fd.
// Policy - which trees, binds and mounts - is the caller's.
//
// Order (runc setns_init / docs/sandbox.md#joining-a-sandbox):
//   pidfd_open(init) and check its user namespace inode, so a recycled pid
//   can never send us into someone else's sandbox; PR_SET_DUMPABLE 0, so
//   nothing in the sandbox can ptrace or read /proc/<us>/{mem,environ,exe}
//   during the window between setns and exec (CVE-2016-9962, CVE-2019-5736);
//   join the session's cgroups while still on the host side; setns(pidfd,
//   all namespaces) - atomic since 5.8, user namespace handled by the kernel;
//   drop to the sandbox uid; fork (a pid namespace applies to children);
//   in the child mark every fd above 2 close-on-exec (whatever a caller
//   leaked - node-pty handed on every open pty master, microsoft/node-pty#657 -
//   stays out of the sandbox) and exec.
// The parent stays as a small relay of signals and of the exit status.
//
//
// --pty COLS ROWS --console-fd N (terminals): the command gets a pty of the
// sandbox's own devpts, so `tty`, job control, `script` and `su -` behave as
// on a real machine (a host pty's /dev/pts/N means nothing in the sandbox's
// /dev/pts). As runc does with its --console-socket, the master goes to the
// caller over a unix socket (SCM_RIGHTS), and "PTY" on stdout says it was
// sent: the caller reads and writes the sandbox's pty itself, with no relay
// process copying bytes. The caller (posix_spawn, which hands us nothing
// but three pipes) keeps the socket's other end as its fd N; we copy it from
// our parent with pidfd_getfd while still host root, and check that its peer
// is that parent. The master is opened after entering the
// sandbox, as the sandbox's root: nothing it opens is out of the student's
// own reach. If the student broke their /dev/ptmx, the command gets a host
// pty opened before entering, with a notice on it.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fd_message.h"
#include "report.h"
#include "seccomp.h"
#include "sys.h"

extern char** environ;

namespace join {
namespace {

// Every failure of a join is the sandbox step `join` (StepName in
// native/index.ts); the syscall field tells the phases apart.
const char kStep[] = "join";

struct Args {
  pid_t pid = -1;
  unsigned long long userns_ino = 0;
  std::vector<std::string> cgroups;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string cwd = "/";
  std::string cwd_fallback;  // where to start if cwd is gone (empty: fail)
  std::vector<std::string> env;
  bool set_sid = false;
  bool pty = false;
  unsigned short cols = 80, rows = 24;
  int console_fd = -1;                 // the caller's fd number of the console socket
  unsigned long long console_ino = 0;  // ...and its inode
  bool no_seccomp = false;
  unsigned long nproc = 0;  // 0: RLIMIT_NPROC left as inherited
  // A private mount view for the command: host trees moved in, then actions.
  std::vector<std::pair<std::string, std::string>> tool_trees;  // host dir, target in new root
  std::vector<std::string> binds;  // the sandbox's own paths, cloned into the new root
  struct ViewAction {
    char kind;  // 'd' mkdir, 'm' mount, 's' symlink
    std::string a, b, c, d;
  };
  std::vector<ViewAction> view;
  std::vector<char*> argv;
};

[[noreturn]] void usage(const char* why) { report::die(kStep, "", EINVAL, "", why); }

Args parse(int argc, char** argv) {
  Args a;
  int i = 2;  // argv[0] = helper, argv[1] = "join"
  for (; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc) usage(("missing value for " + k).c_str());
      return argv[++i];
    };
    if (k == "--") {
      ++i;
      break;
    } else if (k == "--pid") {
      a.pid = static_cast<pid_t>(atol(val()));
    } else if (k == "--userns-ino") {
      a.userns_ino = strtoull(val(), nullptr, 10);
    } else if (k == "--cgroup") {
      a.cgroups.emplace_back(val());
    } else if (k == "--uid") {
      a.uid = static_cast<uid_t>(atol(val()));
    } else if (k == "--gid") {
      a.gid = static_cast<gid_t>(atol(val()));
    } else if (k == "--cwd") {
      a.cwd = val();
    } else if (k == "--cwd-fallback") {
      a.cwd_fallback = val();
    } else if (k == "--env") {
      a.env.emplace_back(val());
    } else if (k == "--setsid") {
      a.set_sid = true;
    } else if (k == "--pty") {
      a.pty = true;
      a.cols = static_cast<unsigned short>(atoi(val()));
      a.rows = static_cast<unsigned short>(atoi(val()));
      if (a.cols == 0 || a.rows == 0) usage("--pty needs COLS ROWS, both at least 1");
    } else if (k == "--console-fd") {
      char* end = nullptr;
      const char* v = val();
      long n = strtol(v, &end, 10);
      if (*v == '\0' || *end != '\0' || n < 0 || n > 1 << 20)
        usage("--console-fd needs an fd number");
      a.console_fd = static_cast<int>(n);
    } else if (k == "--console-ino") {
      a.console_ino = strtoull(val(), nullptr, 10);
    } else if (k == "--nproc") {
      a.nproc = strtoul(val(), nullptr, 10);
      if (a.nproc == 0) usage("--nproc needs a count of at least 1");
    } else if (k == "--no-seccomp") {
      a.no_seccomp = true;
    } else if (k == "--tool-tree") {
      std::string src = val();
      a.tool_trees.emplace_back(src, val());
    } else if (k == "--view-bind") {
      a.binds.emplace_back(val());
    } else if (k == "--view-mkdir") {
      a.view.push_back({'d', val(), "", "", ""});
    } else if (k == "--view-mount") {
      std::string fstype = val(), source = val(), target = val();
      a.view.push_back({'m', fstype, source, target, val()});
    } else if (k == "--view-symlink") {
      std::string target = val();
      a.view.push_back({'s', target, val(), "", ""});
    } else {
      usage(("unknown option " + k).c_str());
    }
  }
  for (; i < argc; ++i) a.argv.push_back(argv[i]);
  if (a.pid <= 0) usage("--pid is required");
  if (a.argv.empty()) usage("no command after --");
  if ((!a.tool_trees.empty() || !a.binds.empty() || !a.view.empty()) && a.uid != 0)
    usage("a private view (--tool-tree, --view-*) needs --uid 0");
  if (a.pty != (a.console_fd >= 0) || a.pty != (a.console_ino != 0))
    usage("--pty, --console-fd and --console-ino go together");
  if (a.pty && (!a.tool_trees.empty() || !a.binds.empty() || !a.view.empty()))
    usage("--pty is for terminals, not for a private view");
  a.argv.push_back(nullptr);
  return a;
}

bool write_file(const char* path, const std::string& s) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = write(fd, s.data(), s.size());
  int saved = errno;
  close(fd);
  errno = saved;
  return n == static_cast<ssize_t>(s.size());
}

pid_t g_child = -1;

// On the host, before entering the sandbox: a detached, read-only copy of
// each tool tree. Opened here because no host path is reachable from inside.
std::vector<int> open_tool_trees(const Args& a) {
  std::vector<int> fds;
  for (const auto& t : a.tool_trees) {
    int fd = sys::open_tree(AT_FDCWD, t.first.c_str(),
                            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (fd < 0) report::die(kStep, "open_tree", errno, t.first.c_str());
    struct stat st;
    if (fstat(fd, &st) != 0) report::die(kStep, "fstat", errno, t.first.c_str());
    struct mount_attr attr = {};
    // A device node (/dev/null for the view) must stay usable: no nodev on it.
    attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID |
                    (S_ISCHR(st.st_mode) ? 0 : static_cast<unsigned>(MOUNT_ATTR_NODEV));
    // A clone stays in its source's peer group. Under systemd every host
    // mount is shared, so what make_view places on top of a clone (the
    // toolset over the image's /usr) would also appear in the host's
    // namespace, and in every other view: one more per check, until the
    // kernel's mount limit (ENOSPC). Private cuts the clone loose.
    attr.propagation = MS_PRIVATE;
    if (sys::mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr) != 0)
      report::die(kStep, "mount_setattr", errno, t.first.c_str());
    fds.push_back(fd);
  }
  return fds;
}

int fsmount_new(const char* fstype, const std::vector<std::pair<const char*, const char*>>& opts,
                unsigned attrs) {
  int fs = sys::fsopen(fstype, FSOPEN_CLOEXEC);
  if (fs < 0) report::die(kStep, "fsopen", errno, "", fstype);
  for (const auto& o : opts) {
    if (sys::fsconfig(fs, FSCONFIG_SET_STRING, o.first, o.second, 0) != 0)
      report::die(kStep, "fsconfig", errno, "", o.first);
  }
  if (sys::fsconfig(fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
    report::die(kStep, "fsconfig", errno, "", fstype);
  int m = sys::fsmount(fs, FSMOUNT_CLOEXEC, attrs);
  if (m < 0) report::die(kStep, "fsmount", errno, "", fstype);
  close(fs);
  return m;
}

// mkdir -p of a path relative to dirfd (components we create ourselves, or
// directories of the read-only trees already placed).
void mkdirs_at(int dirfd, const std::string& rel) {
  for (size_t i = 0; i <= rel.size(); ++i) {
    if (i != rel.size() && rel[i] != '/') continue;
    std::string part = rel.substr(0, i);
    if (part.empty()) continue;
    if (mkdirat(dirfd, part.c_str(), 0755) != 0 && errno != EEXIST)
      report::die(kStep, "mkdirat", errno, part.c_str());
  }
}

void place(int root, int tree, const std::string& rel) {
  struct stat st;
  if (fstat(tree, &st) != 0) report::die(kStep, "fstat", errno, rel.c_str());
  if (S_ISDIR(st.st_mode)) {
    mkdirs_at(root, rel);
  } else {  // a file (a device node): an empty file to mount it on
    size_t slash = rel.rfind('/');
    if (slash != std::string::npos) mkdirs_at(root, rel.substr(0, slash));
    int f = openat(root, rel.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    if (f < 0) report::die(kStep, "openat", errno, rel.c_str());
    close(f);
  }
  if (sys::move_mount(tree, "", root, rel.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0)
    report::die(kStep, "move_mount", errno, rel.c_str());
  close(tree);
}

// In the command's process (sandbox root, in the sandbox's pid namespace so
// a new proc shows it): see the header. Private first, so nothing we mount
// propagates back to the student's namespace (nor theirs into ours).
void make_view(const Args& a, const std::vector<int>& trees) {
  if (unshare(CLONE_NEWNS) != 0) report::die(kStep, "unshare", errno, "", "CLONE_NEWNS");
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    report::die(kStep, "mount", errno, "/", "MS_REC|MS_PRIVATE");
  // The student's own dirs, cloned before anything of ours sits on top.
  std::vector<std::pair<int, std::string>> binds;
  for (const std::string& p : a.binds) {
    int fd =
        sys::open_tree(AT_FDCWD, p.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    if (fd < 0) {
      if (errno == ENOENT || errno == ENOTDIR) continue;  // the student removed it
      report::die(kStep, "open_tree", errno, p.c_str());
    }
    binds.emplace_back(fd, p.substr(p.find_first_not_of('/')));
  }
  // A proc of the sandbox's pid namespace, made while the sandbox's own is
  // still visible here (the kernel refuses a proc less masked than one the
  // namespace already shows, and we detach those below).
  int proc = fsmount_new("proc", {}, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
  int root =
      fsmount_new("tmpfs", {{"size", "1m"}, {"mode", "755"}}, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
  int slash = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (slash < 0) report::die(kStep, "open", errno, "/");
  if (sys::move_mount(root, "", slash, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0)
    report::die(kStep, "move_mount", errno, "/", "the new root");
  close(slash);
  for (size_t i = 0; i < trees.size(); ++i) place(root, trees[i], a.tool_trees[i].second);
  for (const auto& b : binds) place(root, b.first, b.second);
  place(root, proc, "proc");
  if (fchdir(root) != 0) report::die(kStep, "fchdir", errno, "", "the new root");
  close(root);
  // runc's pivot_root(".", "."): the old root ends up on top and is detached.
  if (sys::pivot_root(".", ".") != 0) report::die(kStep, "pivot_root", errno, ".");
  if (umount2(".", MNT_DETACH) != 0) report::die(kStep, "umount2", errno, ".", "the old root");
  if (chdir("/") != 0) report::die(kStep, "chdir", errno, "/");
  for (const auto& v : a.view) {
    if (v.kind == 'd') {
      if (mkdir(v.a.c_str(), 0755) != 0 && errno != EEXIST)
        report::die(kStep, "mkdir", errno, v.a.c_str());
    } else if (v.kind == 's') {
      if (symlink(v.a.c_str(), v.b.c_str()) != 0 && errno != EEXIST)
        report::die(kStep, "symlink", errno, v.b.c_str());
    } else if (mount(v.b.empty() ? nullptr : v.b.c_str(), v.c.c_str(), v.a.c_str(),
                     MS_NOSUID | MS_NODEV | MS_NOEXEC, v.d.empty() ? nullptr : v.d.c_str()) != 0) {
      report::die(kStep, "mount", errno, v.c.c_str(), v.a.c_str());
    }
  }
}

// A pty master, unlocked, or -1 with errno. `path` is a /dev/ptmx: the
// host's before entering, the sandbox's after.
int open_pty(const char* path, const char** why, int* open_errno = nullptr) {
  int m = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
  struct stat st;
  int unlock = 0;
  if (m < 0) {
    if (open_errno != nullptr) *open_errno = errno;
    *why = strerror(errno);
  } else if (fstat(m, &st) != 0 || !S_ISCHR(st.st_mode) || major(st.st_rdev) != 5 ||
             minor(st.st_rdev) != 2) {
    *why = "not the pty multiplexer (5:2)";
  } else if (ioctl(m, TIOCSPTLCK, &unlock) != 0) {
    *why = strerror(errno);
  } else {
    return m;
  }
  if (m >= 0) close(m);
  return -1;
}

// In the command's process, before exec: the pty's other end as its
// controlling terminal and stdio, in a session of its own.
void take_pty(int master) {
  if (setsid() < 0) report::die(kStep, "setsid", errno, "");
  int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
  if (slave < 0) report::die(kStep, "ioctl", errno, "/dev/ptmx", "TIOCGPTPEER");
  if (ioctl(slave, TIOCSCTTY, 0) != 0) report::die(kStep, "ioctl", errno, "", "TIOCSCTTY");
  for (int fd = 0; fd <= 2; ++fd)
    if (dup2(slave, fd) < 0) report::die(kStep, "dup2", errno, "");
  close(slave);
  close(master);
}

// The console socket: our parent's fd `n`, copied into ours as fd 3 before
// anything else is open there. It must be the very socket the caller named
// (its inode, a seqpacket socket) and its peer that parent (the caller made
// the pair), or we would hand a pty to whatever else held that number.
void take_console_socket(int n, unsigned long long ino) {
  pid_t parent = getppid();
  int pp = sys::pidfd_open(parent, 0);
  if (pp < 0) report::die(kStep, "pidfd_open", errno, "", "the caller (console socket)");
  int s = sys::pidfd_getfd(pp, n, 0);
  if (s < 0) report::die(kStep, "pidfd_getfd", errno, "", "the caller's console socket");
  close(pp);
  struct ucred peer;
  socklen_t len = sizeof peer;
  if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0)
    report::die(kStep, "getsockopt", errno, "", "SO_PEERCRED of the console socket");
  if (peer.pid != parent)
    report::die(kStep, "getsockopt", EBADF, "", "the console socket is not the caller's");
  struct stat st;
  int type = 0;
  len = sizeof type;
  if (fstat(s, &st) != 0 || !S_ISSOCK(st.st_mode) || st.st_ino != ino ||
      getsockopt(s, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_SEQPACKET)
    report::die(kStep, "fstat", EBADF, "", "fd --console-fd is not the console socket named");
  if (s != 3) {
    if (dup3(s, 3, O_CLOEXEC) < 0) report::die(kStep, "dup3", errno, "", "console socket");
    close(s);
  }
}

// The master to the caller over the console socket (fd 3), then "PTY\n" on
// stdout, its cue to receive it. A caller that went away gets nothing: the
// command then ends with SIGHUP when the last master copy closes.
void send_master(int master) {
  FdMessage m;
  struct cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &master, sizeof master);
  ssize_t n;
  do n = sendmsg(3, &m.msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  close(master);
  close(3);
  if (n == 1) {
    ssize_t w;
    do w = write(1, "PTY\n", 4);
    while (w < 0 && errno == EINTR);
  }
}

}  // namespace

int run(int argc, char** argv) {
  report::set_fd(2);
  Args a = parse(argc, argv);
  // Whatever a caller leaked to us (node-pty handed every open pty master to
  // its children) goes now, before we enter the sandbox's namespaces.
  sys::close_range(3, ~0U, 0);
  // The fallback pty, from the host's /dev/ptmx while it is still in reach:
  // used only if the sandbox's own turns out to be unusable.
  int host_master = -1;
  if (a.pty) {
    take_console_socket(a.console_fd, a.console_ino);
    const char* why = nullptr;
    host_master = open_pty("/dev/ptmx", &why);
    if (host_master < 0) report::die(kStep, "open", errno, "/dev/ptmx", why);
  }

  int pidfd = sys::pidfd_open(a.pid, 0);
  if (pidfd < 0) report::die(kStep, "pidfd_open", errno, "", "sandbox init is gone");
  if (a.userns_ino != 0) {
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/ns/user", a.pid);
    struct stat st;
    if (stat(p, &st) != 0) report::die(kStep, "stat", errno, p);
    if (static_cast<unsigned long long>(st.st_ino) != a.userns_ino)
      report::die(kStep, "", ESRCH, p,
                  "pid now belongs to another process (user namespace differs)");
  }
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  const std::vector<int> trees = open_tool_trees(a);

  // A new session first, so the command can never reach the caller's
  // controlling terminal (TIOCSTI through /dev/tty). A caller that already
  // made us a session leader (with a controlling tty of its choosing) keeps that.
  if (a.set_sid && getsid(0) != getpid()) setsid();

  if (a.nproc != 0) {
    struct rlimit rl = {a.nproc, a.nproc};
    if (setrlimit(RLIMIT_NPROC, &rl) != 0)
      report::die(kStep, "setrlimit", errno, "", "RLIMIT_NPROC");
  }

  // "0" is the writer. Written to a v1 `tasks` file it moves just this
  // thread - we have no other - and the kernel (6.1 and later) skips the write
  // lock on cgroup_threadgroup_rwsem, which waits out every fork in progress
  // on the host; a pid, or any cgroup.procs file, takes it. Which files is
  // the caller's policy.
  for (const std::string& procs : a.cgroups) {
    if (!write_file(procs.c_str(), "0")) report::die(kStep, "write", errno, procs.c_str());
  }

  int nsflags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC |
                CLONE_NEWNET | CLONE_NEWCGROUP;
  if (setns(pidfd, nsflags) != 0) report::die(kStep, "setns", errno, "", "pidfd, all namespaces");
  close(pidfd);

  // While still sandbox root (CAP_SYS_ADMIN in the sandbox's userns): the
  // filter is then inherited by the command and everything it starts.
  if (!a.no_seccomp) seccomp::install("join");

  if (setgroups(0, nullptr) != 0) report::die(kStep, "setgroups", errno, "");
  if (setresgid(a.gid, a.gid, a.gid) != 0) report::die(kStep, "setresgid", errno, "");
  if (setresuid(a.uid, a.uid, a.uid) != 0) report::die(kStep, "setresuid", errno, "");
  // setresuid reset dumpable; keep the relay non-dumpable anyway.
  prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

  int master = -1;
  const char* broken_ptmx = nullptr;  // why the sandbox's /dev/ptmx is unusable
  int ptmx_errno = 0;                 // ENOSPC: every pty is taken, nothing is broken
  if (a.pty) {
    master = open_pty("/dev/ptmx", &broken_ptmx, &ptmx_errno);
    if (master >= 0) {
      close(host_master);
    } else {
      master = host_master;
    }
    // The command starts at the right size (later: the caller's TIOCSWINSZ).
    struct winsize ws = {a.rows, a.cols, 0, 0};
    ioctl(master, TIOCSWINSZ, &ws);
  }

  // Block the signals we relay before forking, so none is lost in between.
  sigset_t relay;
  sigemptyset(&relay);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD}) sigaddset(&relay, s);
  sigset_t old;
  sigprocmask(SIG_BLOCK, &relay, &old);

  // Tells the command whether the relay still lives once PDEATHSIG is armed:
  // the relay is outside the command's pid namespace, so getppid() reads 0
  // whether it lives or not (and an orphan goes to the server, a subreaper,
  // not to the sandbox's init). EOF here means the relay is gone.
  int alive[2];
  if (pipe2(alive, O_CLOEXEC) != 0) report::die(kStep, "pipe2", errno, "");
  pid_t child = fork();
  if (child < 0) report::die(kStep, "fork", errno, "");
  if (child == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s = 1; s < NSIG; ++s) signal(s, SIG_DFL);
    // If the relay dies (a check's time bound, a killed terminal), so does
    // the command; its own children are reached through the cgroup.
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    close(alive[1]);
    struct pollfd relay_gone = {alive[0], POLLIN, 0};
    if (poll(&relay_gone, 1, 0) != 0) _exit(125);  // EOF/HUP: died before PDEATHSIG was set
    close(alive[0]);
    if (!trees.empty() || !a.binds.empty() || !a.view.empty()) make_view(a, trees);
    sys::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    // The student owns their home dir and may remove it; a shell (or a
    // check) then starts in the fallback, as sshd does, instead of failing.
    int cwd_errno = 0;
    if (chdir(a.cwd.c_str()) != 0) {
      cwd_errno = errno;
      if (a.cwd_fallback.empty() || chdir(a.cwd_fallback.c_str()) != 0)
        report::die(kStep, "chdir", cwd_errno, a.cwd.c_str());
    }
    // Last, so every failure before it still reaches the caller as a record
    // on our stderr, not the student's screen as raw text.
    if (master >= 0) take_pty(master);
    if (broken_ptmx != nullptr && ptmx_errno == ENOSPC)
      dprintf(2,
              "underlay: no pty left (this sandbox's 256 are taken, or the host's shared pool "
              "is): this shell runs on the host's terminal, where `tty` says \"not a tty\". If "
              "`ls /dev/pts | wc -l` shows about 256, close what holds them (leftover `script`, "
              "`tmux` or `screen` sessions)\r\n");
    else if (broken_ptmx != nullptr)
      dprintf(2,
              "underlay: the sandbox's /dev/ptmx is unusable (%s): this shell runs on the "
              "host's terminal, where `tty` says \"not a tty\". Restore it with: "
              "ln -sf pts/ptmx /dev/ptmx\r\n",
              broken_ptmx);
    if (cwd_errno != 0 && master >= 0)
      dprintf(2, "underlay: cannot enter %s (%s): starting in %s\r\n", a.cwd.c_str(),
              strerror(cwd_errno), a.cwd_fallback.c_str());
    std::vector<char*> envp;
    for (std::string& e : a.env) envp.push_back(&e[0]);
    envp.push_back(nullptr);
    environ = envp.data();  // execvp searches the sandbox's PATH, not ours
    execvp(a.argv[0], a.argv.data());
    int e = errno;
    fprintf(stderr, "underlay: cannot run %s: %s\n", a.argv[0], strerror(e));
    // --nproc: at the limit, execve fails too (PF_NPROC_EXCEEDED), not only fork.
    if (e == EAGAIN)
      fprintf(stderr,
              "underlay: the sandbox has as many processes as it may (a fork bomb?): "
              "end some, e.g. `kill -9 -1` from a terminal that is open\n");
    _exit(e == ENOENT ? 127 : 126);
  }
  close(alive[0]);  // alive[1] stays open for as long as the relay lives
  g_child = child;
  if (master >= 0) send_master(master);
  for (;;) {
    siginfo_t info;
    int s = sigwaitinfo(&relay, &info);
    if (s < 0) continue;
    if (s != SIGCHLD) {
      kill(child, s);
      continue;
    }
    int st = 0;
    pid_t r = waitpid(child, &st, WNOHANG);
    if (r == child) {
      if (WIFEXITED(st)) return WEXITSTATUS(st);
      if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
      return 1;
    }
  }
}

}  // namespace join

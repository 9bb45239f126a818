// `underlay-nsexec join`: enter a running sandbox and exec a command in it,
// the way `runc exec` / `nsenter` do, for terminals, checks and
// `underlay sandbox run`.
//
//   underlay-nsexec join --pid N --userns-ino N [--cgroup PROCS]... [--uid N]
//                        [--gid N] [--cwd DIR] [--env K=V]... [--setsid] [--pty] [--no-seccomp]
//                        [--tool-tree HOSTDIR DIR]... [--view-bind PATH]...
//                        [--view-mkdir DIR]... [--view-mount FSTYPE SOURCE DIR DATA]...
//                        [--view-symlink TARGET PATH]... -- ARGV...
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
//   in the child mark every fd above 2 close-on-exec (node-pty and Node leak
//   other terminals' pty masters otherwise: microsoft/node-pty#657) and exec.
// The parent stays as a small relay of signals and of the exit status.
//
// --pty (terminals): the command gets a pty of the sandbox's own devpts
// instead of the caller's host pty, so `tty`, job control, `script` and
// `su -` behave as on a real machine (a host pty's /dev/pts/N means nothing
// in the sandbox's /dev/pts). runc passes such a master to its caller over a
// console socket; here the relay keeps it and copies bytes between it and
// the caller's pty (put in raw mode: the sandbox's line discipline is the
// one that echoes and turns ^C into SIGINT), with the window size. The
// relay opens it after entering the sandbox, as the sandbox's root: nothing
// it opens is out of the student's own reach. If the student broke their
// /dev/ptmx, the command runs on the caller's pty as before, with a notice.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

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
  std::vector<std::string> env;
  bool set_sid = false;
  bool pty = false;
  bool no_seccomp = false;
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
    } else if (k == "--env") {
      a.env.emplace_back(val());
    } else if (k == "--setsid") {
      a.set_sid = true;
    } else if (k == "--pty") {
      a.pty = true;
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

// --pty: a master of the sandbox's devpts (its /dev/ptmx, reached after
// setns), or -1 with the reason on the caller's pty if the student broke it.
int open_sandbox_pty() {
  int m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
  const char* why = nullptr;
  int err = errno;
  struct stat st;
  int unlock = 0;
  if (m < 0) {
    why = strerror(err);
  } else if (fstat(m, &st) != 0 || !S_ISCHR(st.st_mode) || major(st.st_rdev) != 5 ||
             minor(st.st_rdev) != 2) {
    why = "not the pty multiplexer (5:2)";
  } else if (ioctl(m, TIOCSPTLCK, &unlock) != 0) {
    why = strerror(errno);
  }
  if (why == nullptr) return m;
  if (m >= 0) close(m);
  dprintf(2,
          "underlay: the sandbox's /dev/ptmx is unusable (%s): this shell runs on the "
          "host's terminal, where `tty` says \"not a tty\". Restore it with: "
          "ln -sf pts/ptmx /dev/ptmx\r\n",
          why);
  return -1;
}

void copy_winsize(int from, int to) {
  struct winsize ws;
  if (ioctl(from, TIOCGWINSZ, &ws) == 0) ioctl(to, TIOCSWINSZ, &ws);
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

ssize_t retry_read(int fd, char* b, size_t n) {
  ssize_t r;
  do r = read(fd, b, n);
  while (r < 0 && errno == EINTR);
  return r;
}

// The relay's loop for --pty: bytes both ways, never blocking one way on the
// other (a client that stops reading a flood must still be able to send ^C),
// the window size, relayed signals; returns the command's exit status.
int relay_pty(int master, pid_t child, const sigset_t& relayed) {
  struct termios raw;
  if (tcgetattr(0, &raw) == 0) {
    cfmakeraw(&raw);
    tcsetattr(0, TCSANOW, &raw);
  }
  sigset_t mask = relayed;
  sigaddset(&mask, SIGWINCH);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  int sig = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sig < 0) {
    kill(child, SIGKILL);
    report::die(kStep, "signalfd", errno, "");
  }
  for (int fd : {0, 1}) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  copy_winsize(0, master);  // a resize before the signalfd existed
  static char in[4096], out[65536];
  size_t in_len = 0, in_off = 0, out_len = 0, out_off = 0;
  bool host_gone = false, master_gone = false;
  int status = -1;
  // What the command wrote before it ended. The tty layer hands data to the
  // master asynchronously, so an empty read right after the exit does not
  // mean the end: read until EIO (no slave left) or a quiet 100 ms (a
  // background job still holds it).
  auto flush_master = [&]() {
    size_t budget = 1 << 20;  // a job still printing after the shell left: not forever
    while (budget > 0) {
      if (out_len == 0 && !master_gone) {
        struct pollfd r = {master, POLLIN, 0};
        if (poll(&r, 1, 100) <= 0) break;
        ssize_t n = retry_read(master, out, sizeof out);
        if (n < 0 && errno == EAGAIN) continue;
        if (n <= 0) break;
        out_len = static_cast<size_t>(n);
        out_off = 0;
        budget -= std::min(budget, out_len);
      }
      if (out_len == 0 || host_gone) break;
      struct pollfd w = {1, POLLOUT, 0};
      if (poll(&w, 1, 1000) <= 0) break;  // nobody reads: give up on the tail
      ssize_t n = write(1, out + out_off, out_len - out_off);
      if (n <= 0) break;
      out_off += static_cast<size_t>(n);
      if (out_off == out_len) out_len = 0;
    }
  };
  for (;;) {
    // A hung-up fd reports POLLHUP whatever it is asked: one not waited on
    // now is left out (fd -1), or the loop would spin while a client stalls.
    auto want = [](int fd, bool in, bool out) {
      short ev = static_cast<short>((in ? POLLIN : 0) | (out ? POLLOUT : 0));
      return pollfd{ev != 0 ? fd : -1, ev, 0};
    };
    struct pollfd p[4] = {
        want(0, !host_gone && in_len == 0, false),
        want(1, false, !host_gone && out_len > 0),
        want(master, !master_gone && out_len == 0, !master_gone && in_len > 0),
        {sig, POLLIN, 0},
    };
    if (poll(p, 4, -1) < 0) {
      if (errno == EINTR) continue;
      kill(child, SIGKILL);
      report::die(kStep, "poll", errno, "");
    }
    if (p[0].revents) {
      ssize_t r = retry_read(0, in, sizeof in);
      if (r > 0) {
        in_len = static_cast<size_t>(r);
        in_off = 0;
      } else if (r == 0 || errno != EAGAIN) {  // the caller hung up
        host_gone = true;
        in_len = out_len = 0;
        kill(child, SIGHUP);
      }
    }
    if (p[2].revents & (POLLOUT | POLLERR | POLLHUP) && in_len > 0) {
      ssize_t n = write(master, in + in_off, in_len - in_off);
      if (n > 0) {
        in_off += static_cast<size_t>(n);
        if (in_off == in_len) in_len = 0;
      }
    }
    if (p[2].revents & (POLLIN | POLLERR | POLLHUP) && out_len == 0) {
      ssize_t r = retry_read(master, out, sizeof out);
      if (r > 0) {
        out_len = static_cast<size_t>(r);
        out_off = 0;
      } else if (r == 0 || errno != EAGAIN) {  // EIO: no slave left open
        master_gone = true;
        in_len = 0;
      }
    }
    if (p[1].revents && out_len > 0) {
      ssize_t n = write(1, out + out_off, out_len - out_off);
      if (n > 0) {
        out_off += static_cast<size_t>(n);
        if (out_off == out_len) out_len = 0;
      } else if (n < 0 && errno != EAGAIN) {
        host_gone = true;
        in_len = out_len = 0;
        kill(child, SIGHUP);
      }
    }
    if (p[3].revents) {
      struct signalfd_siginfo si;
      while (read(sig, &si, sizeof si) == sizeof si) {
        int s = static_cast<int>(si.ssi_signo);
        if (s == SIGWINCH) {
          copy_winsize(0, master);
        } else if (s != SIGCHLD) {
          kill(child, s);
        }
      }
      int st = 0;
      if (waitpid(child, &st, WNOHANG) == child) status = st;
    }
    if (status != -1) {
      flush_master();
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return 1;
    }
  }
}

}  // namespace

int run(int argc, char** argv) {
  report::set_fd(2);
  Args a = parse(argc, argv);
  // Whatever the caller leaked to us (node-pty hands every open pty master
  // to its children) goes now, before we enter the sandbox's namespaces.
  sys::close_range(3, ~0U, 0);

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
  // controlling terminal (TIOCSTI through /dev/tty). A pty caller (node-pty)
  // already made one and made the pty our controlling tty; keep that.
  if (a.set_sid && getsid(0) != getpid()) setsid();

  std::string self = std::to_string(getpid());
  for (const std::string& procs : a.cgroups) {
    if (!write_file(procs.c_str(), self)) report::die(kStep, "write", errno, procs.c_str());
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

  int master = a.pty ? open_sandbox_pty() : -1;
  if (master >= 0) copy_winsize(0, master);  // the command starts at the right size

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
    if (master >= 0) take_pty(master);
    if (!trees.empty() || !a.binds.empty() || !a.view.empty()) make_view(a, trees);
    sys::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    if (chdir(a.cwd.c_str()) != 0) report::die(kStep, "chdir", errno, a.cwd.c_str());
    std::vector<char*> envp;
    for (std::string& e : a.env) envp.push_back(&e[0]);
    envp.push_back(nullptr);
    environ = envp.data();  // execvp searches the sandbox's PATH, not ours
    execvp(a.argv[0], a.argv.data());
    int e = errno;
    fprintf(stderr, "underlay: cannot run %s: %s\n", a.argv[0], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
  }
  close(alive[0]);  // alive[1] stays open for as long as the relay lives
  g_child = child;
  if (master >= 0) return relay_pty(master, child, relay);
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

// Thin syscall shims for calls glibc 2.36 does not wrap (or wraps too late for
// Debian 12): the new mount API, pidfds and close_range. Kept header-only so
// the helper stays one static binary with no extra objects. clone3 too: glibc
// exports no wrapper, and <linux/sched.h> clashes with <sched.h>.
#pragma once

#include <fcntl.h>
#include <linux/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

namespace sys {

inline int pidfd_open(pid_t pid, unsigned flags) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, flags));
}

// A copy of another process's fd (Linux 5.6; needs ptrace rights over it).
inline int pidfd_getfd(int pidfd, int fd, unsigned flags) {
  return static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, fd, flags));
}

inline int open_tree(int dfd, const char* path, unsigned flags) {
  return static_cast<int>(syscall(SYS_open_tree, dfd, path, flags));
}

inline int mount_setattr(int dfd, const char* path, unsigned flags, struct mount_attr* attr) {
  return static_cast<int>(syscall(SYS_mount_setattr, dfd, path, flags, attr, sizeof(*attr)));
}

inline int move_mount(int from_dfd, const char* from, int to_dfd, const char* to, unsigned flags) {
  return static_cast<int>(syscall(SYS_move_mount, from_dfd, from, to_dfd, to, flags));
}

inline int fsopen(const char* fstype, unsigned flags) {
  return static_cast<int>(syscall(SYS_fsopen, fstype, flags));
}

inline int fsconfig(int fd, unsigned cmd, const char* key, const void* value, int aux) {
  return static_cast<int>(syscall(SYS_fsconfig, fd, cmd, key, value, aux));
}

inline int fsmount(int fd, unsigned flags, unsigned attrs) {
  return static_cast<int>(syscall(SYS_fsmount, fd, flags, attrs));
}

inline int pivot_root(const char* new_root, const char* put_old) {
  return static_cast<int>(syscall(SYS_pivot_root, new_root, put_old));
}

// struct clone_args up to `cgroup` (CLONE_ARGS_SIZE_VER2, Linux 5.7).
struct CloneArgs {
  uint64_t flags;
  uint64_t pidfd;
  uint64_t child_tid;
  uint64_t parent_tid;
  uint64_t exit_signal;
  uint64_t stack;
  uint64_t stack_size;
  uint64_t tls;
  uint64_t set_tid;
  uint64_t set_tid_size;
  uint64_t cgroup;
};
constexpr uint64_t kCloneIntoCgroup = 0x200000000ULL;  // CLONE_INTO_CGROUP

// Returns like fork(): 0 in the child. No libc fork handlers run.
inline long clone3(CloneArgs* args) { return syscall(SYS_clone3, args, sizeof(*args)); }

inline int close_range(unsigned first, unsigned last, unsigned flags) {
  return static_cast<int>(syscall(SYS_close_range, first, last, flags));
}

}  // namespace sys

// A deny-list seccomp filter for everything that runs in a sandbox.
//
// Why a deny list and not Docker's profile: Docker keys its rules on the
// capabilities a container holds, and lab students hold CAP_SYS_ADMIN (in
// their user namespace) - mount, unshare and setns are the curriculum. So we
// allow everything the labs need and refuse the kernel surfaces no lab needs
// and that carry the userns privilege-escalation history (docs/sandbox.md#the-seccomp-filter):
// io_uring, Linux AIO (a host-wide counter), bpf, perf, userfaultfd, keyrings, module and kexec
// loading, open_by_handle_at (Shocker), clock setters, AF_ALG ("copy.fail")
// and AF_VSOCK sockets, and TIOCSTI/TIOCLINUX terminal injection.
//
// Installed without PR_SET_NO_NEW_PRIVS on purpose: no_new_privs would also
// disable file capabilities, and the setcap-ping lab depends on them. The
// kernel allows that because the caller holds CAP_SYS_ADMIN in its (the
// sandbox's) user namespace at this point.
#include "seccomp.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <vector>

#include "report.h"

namespace seccomp {
namespace {

#if defined(__x86_64__)
constexpr unsigned kArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr unsigned kArch = AUDIT_ARCH_AARCH64;
#else
#error "add the AUDIT_ARCH for this architecture"
#endif

constexpr unsigned kX32Bit = 0x40000000;
constexpr unsigned kAfAlg = 38, kAfVsock = 40;
constexpr unsigned kTiocsti = 0x5412, kTioclinux = 0x541C;

const long kBlocked[] = {
#ifdef SYS_kexec_load
    SYS_kexec_load,
#endif
    SYS_kexec_file_load,
    SYS_init_module,
    SYS_finit_module,
    SYS_delete_module,
    SYS_open_by_handle_at,
    SYS_bpf,
    SYS_perf_event_open,
    SYS_userfaultfd,
    SYS_io_uring_setup,
    SYS_io_uring_enter,
    SYS_io_uring_register,
    // Linux AIO: every context counts against the host-wide fs.aio-max-nr
    // (65536 by default; not per user or namespace), which one sandbox could
    // use up for the whole host. No lab needs it; glibc's POSIX aio uses threads.
    SYS_io_setup,
    SYS_io_destroy,
    SYS_io_submit,
    SYS_io_cancel,
    SYS_io_getevents,
#ifdef SYS_io_pgetevents
    SYS_io_pgetevents,
#endif
    SYS_add_key,
    SYS_request_key,
    SYS_keyctl,
    SYS_acct,
    SYS_swapon,
    SYS_swapoff,
    SYS_clock_settime,
    SYS_clock_adjtime,
    SYS_settimeofday,
    SYS_adjtimex,
    SYS_reboot,
    SYS_quotactl,
#ifdef SYS_lookup_dcookie
    SYS_lookup_dcookie,
#endif
#ifdef SYS_iopl
    SYS_iopl,
    SYS_ioperm,
#endif
};

sock_filter stmt(unsigned short code, unsigned k) { return BPF_STMT(code, k); }
sock_filter jump(unsigned short code, unsigned k, unsigned char jt, unsigned char jf) {
  return BPF_JUMP(code, k, jt, jf);
}

// if (nr == syscall) return arg in {a, b} ? deny : allow; else fall through.
// Loading the argument clobbers the accumulator (nr), so each such check
// ends in a return and must come after all plain syscall-number checks.
void deny_arg_values(std::vector<sock_filter>* p, long syscall_nr, unsigned arg_offset, unsigned a,
                     unsigned b, unsigned deny) {
  p->push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<unsigned>(syscall_nr), 0, 5));
  p->push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_offset));
  p->push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, a, 2, 0));
  p->push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, b, 1, 0));
  p->push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  p->push_back(stmt(BPF_RET | BPF_K, deny));
}

}  // namespace

void install(const char* step) {
  const unsigned deny = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
  const unsigned arg0 = offsetof(seccomp_data, args[0]);  // low 32 bits (little endian)
  const unsigned arg1 = offsetof(seccomp_data, args[1]);
  std::vector<sock_filter> p;
  p.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
  p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0));
  p.push_back(stmt(BPF_RET | BPF_K, deny));  // foreign ABIs (i386) are not needed by any lab
  p.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
#if defined(__x86_64__)
  p.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, kX32Bit, 0, 1));
  p.push_back(stmt(BPF_RET | BPF_K, deny));
#endif
  for (long nr : kBlocked) {
    p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<unsigned>(nr), 0, 1));
    p.push_back(stmt(BPF_RET | BPF_K, deny));
  }
  // socket(AF_ALG|AF_VSOCK, ...) and ioctl(fd, TIOCSTI|TIOCLINUX, ...)
  deny_arg_values(&p, SYS_socket, arg0, kAfAlg, kAfVsock, deny);
  deny_arg_values(&p, SYS_ioctl, arg1, kTiocsti, kTioclinux, deny);
  p.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));

  sock_fprog prog = {static_cast<unsigned short>(p.size()), p.data()};
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
    report::die(step, "seccomp", errno, "", "SECCOMP_SET_MODE_FILTER");
  }
}

}  // namespace seccomp

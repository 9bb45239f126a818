/**
 * (syscall, code) -> a hint for the person reading the error, in the spirit
 * of bubblewrap's mount_strerror. Messages say what to check, not what to type.
 */
interface Rule {
  syscall?: string;
  code?: string;
  detail?: RegExp;
  hint: string;
}

const RULES: Rule[] = [
  {
    syscall: 'mount_setattr',
    code: 'EINVAL',
    hint: 'idmapped mounts need Linux >= 5.19 and a filesystem that supports them (ext4, xfs, btrfs, tmpfs >= 6.3). Run `underlay doctor`.',
  },
  {
    syscall: 'mount',
    detail: /fstype=overlay/,
    hint: 'overlayfs refused the layers: check that the base image exists (`underlay rootfs build`) and that upper/work sit on the same filesystem.',
  },
  {
    syscall: 'unshare',
    code: 'EPERM',
    hint: 'creating namespaces needs root on the host (or CAP_SYS_ADMIN); is user.max_user_namespaces > 0? Run `underlay doctor`.',
  },
  {
    syscall: 'unshare',
    code: 'ENOSPC',
    hint: 'a namespace limit was reached (user.max_*_namespaces); see /proc/sys/user/.',
  },
  {
    syscall: 'pivot_root',
    code: 'EINVAL',
    hint: 'pivot_root needs the new root to be a mount point of its own that is not shared; the self-bind step must come first.',
  },
  {
    syscall: 'write',
    code: 'EINVAL',
    detail: /cgroup|uid_map|gid_map/,
    hint: 'the kernel rejected the value; for uid/gid maps the range must not overlap and must fit 32 bits.',
  },
  {
    syscall: 'pidfd_open',
    code: 'ESRCH',
    hint: 'the sandbox init is gone: the session ended or was reaped. Start a new session.',
  },
  {
    code: 'ENOSPC',
    hint: 'a size limit was reached: the session disk (/, /tmp, /lab), a tmpfs (/dev/shm, /run), or the host disk.',
  },
  {
    code: 'EACCES',
    syscall: 'write',
    hint: 'permission denied: cgroup limit files are owned by the host on purpose; only the delegated files are writable.',
  },
];

export function hintFor(
  syscall: string,
  code: string | undefined,
  detail = '',
): string | undefined {
  for (const r of RULES) {
    if (r.syscall !== undefined && r.syscall !== syscall) continue;
    if (r.code !== undefined && r.code !== code) continue;
    if (r.detail !== undefined && !r.detail.test(detail)) continue;
    return r.hint;
  }
  return undefined;
}

#!/bin/bash
# A container runtime in a dozen lines, in the order runc does things.
# Usage: bash c1.sh [program args...]   (default: /bin/sh)
set -e

# 1. The cgroup first: everything started from here on is born into box.
C=/sys/fs/cgroup/cpu
[ -e /sys/fs/cgroup/cgroup.controllers ] && C=/sys/fs/cgroup
echo $$ > $C/box/cgroup.procs

# 2. Every namespace; --fork makes the shell below PID 1 of the new PID namespace.
exec unshare --mount --uts --ipc --net --pid --cgroup --fork bash -c '
  set -e
  hostname c1
  mount --make-rprivate /                 # nothing propagates back to the sandbox
  cd /lab/c1/merged                       # the overlay: already a mount point
  touch dev/null && mount --bind /dev/null dev/null
  mkdir -p .old && pivot_root . .old      # 3. the new root
  hash -r                                 # forget where commands were: it is another /
  mount -t proc proc /proc                # a /proc of the new PID namespace
  umount -l /.old                         # and the old root is gone
  # 4. Last, trim the bounding set to Docker default list, minus NET_RAW.
  exec setpriv --bounding-set=-all,+chown,+dac_override,+fowner,+fsetid,+kill,+setgid,+setuid,+setpcap,+net_bind_service,+sys_chroot,+mknod,+audit_write,+setfcap "$@"
' c1 "${@:-/bin/sh}"

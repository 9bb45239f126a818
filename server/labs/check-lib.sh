# shellcheck shell=bash
# Underlay check library (labs/README.md#the-check-library). Sent by the server ahead of
# every check, hint and solution; runs as root in the sandbox's initial
# namespaces, so /proc/1 is the sandbox init and the baseline.
sbx_ns() { readlink "/proc/1/ns/$1"; }
ns_inode() { stat -L -c %i "/proc/$1/ns/$2" 2>/dev/null; }
# PIDs whose namespace TYPE differs from the sandbox's own. A link we cannot
# read is not "different": the check's own tools are unreadable by design
# (docs/sandbox.md#trusted-checks), and a process may exit meanwhile.
other_ns_pids() {
  local base p l; base=$(sbx_ns "$1")
  for p in /proc/[0-9]*; do
    p=${p#/proc/}
    l=$(readlink "/proc/$p/ns/$1" 2>/dev/null) || continue
    [ -n "$l" ] && [ "$l" != "$base" ] && echo "$p"
  done
  return 0
}
nspid() { awk '/^NSpid:/{ $1=""; sub(/^ /, ""); print }' "/proc/$1/status" 2>/dev/null; }
is_ns_init() { [ "$(nspid "$1" | awk '{print $NF}')" = 1 ]; }
procs_in_pidns() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(stat -L -c %i "$p/ns/pid" 2>/dev/null)" = "$1" ] && echo "${p#/proc/}"
  done
  return 0
}
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null; }
uptime_cs() { awk '{ printf "%d", $1 * 100 }' /proc/uptime; } # monotonic, in 1/100 s
# Over the window really elapsed, not the SECS asked for: on a slow or busy
# host `sleep 3` and the reads around it take ~3.6 s (a Debian 12 VM).
cpu_pct() { # PID SECS -> percent of one CPU over the window
  local a b t0 t1; t0=$(uptime_cs); a=$(cpu_ticks "$1") || return 1
  sleep "$2"; b=$(cpu_ticks "$1") || return 1; t1=$(uptime_cs)
  echo $(( (b - a) * 10000 / ($(getconf CLK_TCK) * (t1 - t0 > 0 ? t1 - t0 : 1)) ))
}
cg_mode() { [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] && echo v2 || echo v1; }
cg_dir() { # PID CTRL -> cgroup path of PID (v1: for CTRL)
  if [ "$(cg_mode)" = v2 ]; then sed -n 's/^0:://p' "/proc/$1/cgroup"
  else awk -F: -v c="$2" '{ n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) print $3 }' "/proc/$1/cgroup"; fi
}
as_learner() { setpriv --reuid=1000 --regid=1000 --clear-groups "$@"; }
is_whiteout() { [ "$(stat -c '%F %t:%T' "$1" 2>/dev/null)" = "character special file 0:0" ]; }
ovl_opaque() { getfattr --only-values -n user.overlay.opaque "$1" 2>/dev/null || getfattr --only-values -n trusted.overlay.opaque "$1" 2>/dev/null; }
mountinfo_of() { cat "/proc/$1/mountinfo"; }
# The super options of the mount at DIR in the sandbox's mount namespace (empty if none).
mount_opts() { awk -v d="$1" '$5 == d { for (i = 7; $i != "-"; i++); print $(i + 3) }' /proc/1/mountinfo | tail -n 1; }
mount_fstype() { awk -v d="$1" '$5 == d { for (i = 7; $i != "-"; i++); print $(i + 1) }' /proc/1/mountinfo | tail -n 1; }
# The cpu controller's root as the sandbox sees it (v1: the cpu hierarchy; v2: the unified one).
cg_root() { if [ "$(cg_mode)" = v2 ]; then echo /sys/fs/cgroup; else echo /sys/fs/cgroup/cpu; fi; }
# KEY of cpu.stat of cgroup NAME (below cg_root).
cg_stat() { awk -v k="$2" '$1 == k { print $2 }' "$(cg_root)/$1/cpu.stat"; }
# PIDs that used at least MINPCT of a CPU over SECS seconds (sampled together).
busy_pids() {
  local secs=$1 min=$2 hz p; hz=$(getconf CLK_TCK)
  declare -A t0
  for p in /proc/[0-9]*; do p=${p#/proc/}; t0[$p]=$(cpu_ticks "$p"); done
  sleep "$secs"
  for p in "${!t0[@]}"; do
    local b; b=$(cpu_ticks "$p") || continue
    [ -n "$b" ] && [ -n "${t0[$p]}" ] && [ $(( (b - t0[$p]) * 100 / (secs * hz) )) -ge "$min" ] && echo "$p"
  done
  return 0
}
sha() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }
# Prints MSG and fails: `[ -f x ] || fail "x is missing"`.
fail() { echo "$*"; exit 1; }
pass() { echo "$*"; exit 0; }

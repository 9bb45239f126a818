# shellcheck shell=bash
# Underlay check library (labs/README.md#the-check-library). Sent by the server ahead of
# every check, hint and solution; runs as root in the sandbox's initial
# namespaces, so /proc/1 is the sandbox init and the baseline.
sbx_ns() { readlink "/proc/1/ns/$1"; }
ns_inode() { stat -L -c %i "/proc/$1/ns/$2" 2>/dev/null; }
# "PID FD" of every open file descriptor on namespace TYPE:[INODE] (one find, not a fork per fd).
ns_fd_holders() { find /proc/[0-9]*/fd -maxdepth 1 -lname "$1:\\[$2\\]" 2>/dev/null | awk -F/ '{ print $3, $5 }'; }
# The helpers below run once per process in loops over /proc, so they use
# bash builtins only: a fork and exec costs ~1 ms here but ~65 ms in an
# emulated VM (and on a host busy with a class), and a check that runs an
# awk per process took seconds there.
#
# PIDs whose namespace TYPE differs from the sandbox's own (`-ef` compares
# the namespaces' inodes). A link we cannot read is not "different": the
# check's own tools are unreadable by design (docs/sandbox.md#trusted-checks),
# and a process may exit meanwhile.
other_ns_pids() {
  local p
  for p in /proc/[0-9]*; do
    [ "$p/ns/$1" -ef "/proc/1/ns/$1" ] || { [ -e "$p/ns/$1" ] && echo "${p#/proc/}"; }
  done
  return 0
}
# The NSpid: fields of PID (outermost first), space-separated; fails if PID is gone.
nspid() {
  local k v
  while read -r k v; do
    [ "$k" = NSpid: ] && { echo "${v//$'\t'/ }"; return 0; }
  done 2>/dev/null <"/proc/$1/status"
  return 1
}
is_ns_init() {
  local k v
  while read -r k v; do
    [ "$k" = NSpid: ] && { [ "${v##*[[:space:]]}" = 1 ]; return; }
  done 2>/dev/null <"/proc/$1/status"
  return 1
}
procs_in_ns() { # TYPE INODE -> PIDs in that namespace (one stat for all of /proc)
  local i n
  while read -r i n; do
    [ "$i" = "$2" ] && { n=${n#/proc/}; echo "${n%%/*}"; }
  done < <(stat -L -c '%i %n' /proc/[0-9]*/ns/"$1" 2>/dev/null)
  return 0
}
procs_in_pidns() { procs_in_ns pid "$1"; }
# "STATE PPID" of PID (R, S, Z, ...), from /proc/PID/stat with builtins; fails if PID is gone.
proc_stat() {
  local s f
  { read -r s <"/proc/$1/stat"; } 2>/dev/null || return 1
  read -ra f <<<"${s##*) }"
  echo "${f[0]} ${f[1]}"
}
# The terminal (T1, T2, ...) PID was started from: UNDERLAY_TERMINAL in the
# environment of PID or of its nearest ancestor that has one (a student may
# unset it; then it is empty, as for processes no terminal started).
term_of() {
  local p=$1 n e s
  local -a env
  for n in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do
    [ -n "$p" ] && [ "$p" -gt 1 ] 2>/dev/null || return 0
    mapfile -d '' env <"/proc/$p/environ" 2>/dev/null
    for e in "${env[@]}"; do
      [ "${e%%=*}" = UNDERLAY_TERMINAL ] && { echo "${e#*=}"; return 0; }
    done
    s=$(proc_stat "$p") || return 0
    p=${s#* }
  done
  return 0
}
# "PID (COMM, from T2)" for messages: which process, and where the student started it.
pdesc() {
  local c t
  c=$(cat "/proc/$1/comm" 2>/dev/null) || { echo "$1"; return 0; }
  t=$(term_of "$1")
  echo "$1 ($c${t:+, from $t})"
}
is_zombie() { local s; s=$(proc_stat "$1") && [ "${s%% *}" = Z ]; }
# _ticks PID: utime + stime of PID into $_t (fails if PID is gone). Fields
# after the last ") " (the command name may hold anything): 12 and 13.
_ticks() {
  local s f
  { read -r s <"/proc/$1/stat"; } 2>/dev/null || return 1
  read -ra f <<<"${s##*) }"
  _t=$((f[11] + f[12]))
}
_hz() { [ -n "${_HZ:-}" ] || _HZ=$(getconf CLK_TCK); }
_uptime() { local u; read -r u _ </proc/uptime; _cs=$((10#${u/./})); } # 1/100 s, monotonic
cpu_ticks() { _ticks "$1" && echo "$_t"; }
uptime_cs() { _uptime; echo "$_cs"; }
# Over the window really elapsed, not the SECS asked for: on a slow or busy
# host `sleep 3` and the reads around it take ~3.6 s (a Debian 12 VM).
cpu_pct() { # PID SECS -> percent of one CPU over the window
  local a t0
  _hz; _uptime; t0=$_cs; _ticks "$1" || return 1; a=$_t
  sleep "$2"; _ticks "$1" || return 1; _uptime
  echo $(((_t - a) * 10000 / (_HZ * (_cs - t0 > 0 ? _cs - t0 : 1))))
}
# v2 mounts the unified hierarchy at /sys/fs/cgroup itself; v1 (and hybrid) a tmpfs of hierarchies.
_cg_v2() { [ -e /sys/fs/cgroup/cgroup.controllers ]; }
cg_mode() { if _cg_v2; then echo v2; else echo v1; fi; }
cg_dir() { # PID CTRL -> cgroup path of PID (v1: for CTRL)
  local id ctrls path v2=
  _cg_v2 && v2=1
  while IFS=: read -r id ctrls path; do
    if [ -n "$v2" ]; then
      [ "$id" = 0 ] && [ -z "$ctrls" ] && echo "$path"
    else
      [[ ",$ctrls," == *",$2,"* ]] && echo "$path"
    fi
  done 2>/dev/null <"/proc/$1/cgroup"
  return 0
}
as_learner() { setpriv --reuid=1000 --regid=1000 --clear-groups "$@"; }
is_whiteout() { [ "$(stat -c '%F %t:%T' "$1" 2>/dev/null)" = "character special file 0:0" ]; }
ovl_opaque() { getfattr --only-values -n user.overlay.opaque "$1" 2>/dev/null || getfattr --only-values -n trusted.overlay.opaque "$1" 2>/dev/null; }
mountinfo_of() { cat "/proc/$1/mountinfo"; }
# The super options of the mount at DIR in the sandbox's mount namespace (empty if none).
mount_opts() { awk -v d="$1" '$5 == d { for (i = 7; $i != "-"; i++); print $(i + 3) }' /proc/1/mountinfo | tail -n 1; }
# "SOURCE FSTYPE [TAGS...]" of the topmost mount at DIR in PID's mount namespace, e.g.
# "p2 tmpfs shared:2" (tags: shared:N, master:N, ... from mountinfo); empty if none.
mnt_at() { awk -v d="$2" '$5 == d { t = ""; for (i = 7; $i != "-"; i++) t = t " " $i; l = $(i + 2) " " $(i + 1) t } END { if (l != "") print l }' "/proc/$1/mountinfo" 2>/dev/null; }
mount_fstype() { awk -v d="$1" '$5 == d { for (i = 7; $i != "-"; i++); print $(i + 1) }' /proc/1/mountinfo | tail -n 1; }
# The cpu controller's root as the sandbox sees it (v1: the cpu hierarchy; v2: the unified one).
cg_root() { if _cg_v2; then echo /sys/fs/cgroup; else echo /sys/fs/cgroup/cpu; fi; }
# KEY of cpu.stat of cgroup NAME (below cg_root).
cg_stat() { awk -v k="$2" '$1 == k { print $2 }' "$(cg_root)/$1/cpu.stat"; }
# PIDs that used at least MINPCT of a CPU over SECS seconds (sampled together).
busy_pids() {
  local secs=$1 min=$2 p
  local -A t0
  _hz
  for p in /proc/[0-9]*; do p=${p#/proc/}; _ticks "$p" && t0[$p]=$_t; done
  sleep "$secs"
  for p in "${!t0[@]}"; do
    _ticks "$p" || continue
    (((_t - t0[$p]) * 100 / (secs * _HZ) >= min)) && echo "$p"
  done
  return 0
}
sha() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }
# Prints MSG and fails: `[ -f x ] || fail "x is missing"`.
fail() { echo "$*"; exit 1; }
pass() { echo "$*"; exit 0; }
# Passes with MSG (what the student reads) and VALUE (what later steps read as
# $STEP_<id>_OUT): `pass_value "$inode" "Your shell is in UTS namespace $inode."`.
pass_value() { local v=$1; shift; printf '::underlay-value::%s\n%s\n' "$v" "$*"; exit 0; }

# Underlay's live kernel-state panels (labs/README.md#live-panels): run inside a
# student's sandbox through the trusted path of checks (the image's own python,
# a fresh /proc), with the panels of one step as JSON in argv[1]. It samples
# every 0.5 s and prints a JSON line, {"t": ..., "panels": [...]}, one entry per
# panel, when the sample changed (see main), and stops when the server closes
# the pipe (or kills it). One long-lived process
# reading /proc directly: no fork per sample (a fork costs ~1 ms here, ~65 ms
# in an emulated VM). What it reads is the student's to change: the server and
# page treat every string as text.
import json
import os
import socket
import stat
import sys
import time

SPECS = json.loads(sys.argv[1])
INTERVAL = 0.5
HZ = os.sysconf("SC_CLK_TCK")
MAX_PROCS = 60
MAX_ENTRIES = 80
ROOT = "/proc/1/root"  # the sandbox's own mount namespace, as the student sees it

CAPS = [
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid",
    "setuid", "setpcap", "linux_immutable", "net_bind_service", "net_broadcast",
    "net_admin", "net_raw", "ipc_lock", "ipc_owner", "sys_module", "sys_rawio",
    "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write",
    "audit_control", "setfcap", "mac_override", "mac_admin", "syslog", "wake_alarm",
    "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
]


def read(path, limit=65536):
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


SELF = os.getpid()


# What this sample's walk of /proc read: pid -> (comm, start time). A class of
# students each watching panels runs one reader per student, so a sample reads
# each process's stat once and nothing it already knows (the terminal a
# process came from is cached by pid and start time).
_stat = {}
_terms = {}


def pids():
    """The sandbox's processes, this reader (and any child of it) left out."""
    out = []
    _stat.clear()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == SELF:
            continue
        st = read(f"/proc/{d}/stat", 512)
        if not st:
            continue
        head, _, rest = st.rpartition(") ")
        f = rest.split()
        if f[1:2] == [str(SELF)]:
            continue
        _stat[int(d)] = (head.partition(" (")[2], f[19] if len(f) > 19 else "")
        out.append(int(d))
    return sorted(out)


def comm(pid):
    hit = _stat.get(pid)
    if hit:
        return hit[0]
    c = read(f"/proc/{pid}/comm")
    return c.strip() if c else "?"


def term_of(pid):
    """The terminal a process came from: UNDERLAY_TERMINAL in its environment
    (the server sets it in each lab terminal; children inherit it)."""
    key = (pid, _stat.get(pid, (None, None))[1])
    if key in _terms:
        return _terms[key]
    if len(_terms) > 4096:
        _terms.clear()
    term = None
    for kv in (read(f"/proc/{pid}/environ", 16384) or "").split("\0"):
        if kv.startswith("UNDERLAY_TERMINAL="):
            term = kv.split("=", 1)[1][:8] or None
            break
    _terms[key] = term
    return term


def proc(pid):
    out = {"pid": pid, "comm": comm(pid)}
    t = term_of(pid)
    if t:
        out["term"] = t
    return out


def cap_names(mask):
    return [CAPS[i] if i < len(CAPS) else f"cap_{i}" for i in range(64) if mask >> i & 1]


# --- namespaces -------------------------------------------------------------

_hostnames = {}


_libc = None
_own_uts = None
CLONE_NEWUTS = 0x04000000


def hostname_of(pid, inode):
    """The hostname of a UTS namespace: this reader joins it, reads it and goes
    back (setns needs a single-threaded caller; this process is one). No fork:
    a class of readers forking a child per namespace cost more CPU than all the
    rest. Cached per inode for a second."""
    global _libc, _own_uts
    hit = _hostnames.get(inode)
    now = time.monotonic()
    if hit and now - hit[1] < 1:
        return hit[0]
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
        _own_uts = os.open("/proc/self/ns/uts", os.O_RDONLY)
    name = None
    try:
        fd = os.open(f"/proc/{pid}/ns/uts", os.O_RDONLY)
    except OSError:
        return None
    try:
        if _libc.setns(fd, CLONE_NEWUTS) == 0:
            try:
                name = socket.gethostname()[:64]
            finally:
                if _libc.setns(_own_uts, CLONE_NEWUTS) != 0:
                    # Stuck in a student's namespace: the hostnames it reads
                    # next would still be right (setns by path), but do not
                    # go on in a state nobody tested.
                    sys.exit(1)
    finally:
        os.close(fd)
    _hostnames[inode] = (name, now)
    return name


def namespaces(spec):
    types = spec.get("types") or ["pid", "uts", "ipc", "mnt", "net", "user", "cgroup"]
    own = {}
    for t in types:
        try:
            own[t] = os.stat(f"/proc/1/ns/{t}").st_ino
        except OSError:
            own[t] = None
    groups = {t: {} for t in types}
    for pid in pids():
        for t in types:
            try:
                ino = os.stat(f"/proc/{pid}/ns/{t}").st_ino
            except OSError:
                continue
            g = groups[t].setdefault(ino, [])
            if len(g) < MAX_PROCS:
                g.append(proc(pid))
    out = []
    for t in types:
        gs = []
        for ino, procs in sorted(groups[t].items(), key=lambda kv: (kv[0] != own[t], kv[0])):
            g = {"inode": ino, "sandbox": ino == own[t], "procs": procs}
            if t == "uts" and procs:
                g["hostname"] = hostname_of(procs[0]["pid"], ino)
            gs.append(g)
        out.append({"type": t, "groups": gs})
    return {"kind": "namespaces", "types": out}


# --- cgroup CPU --------------------------------------------------------------

_last_cpu = {}


def cgroup_cpu(spec):
    group = spec["group"].strip("/")
    v2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    base = "/sys/fs/cgroup" if v2 else "/sys/fs/cgroup/cpu"
    d = f"{base}/{group}"
    if not os.path.isdir(d):
        return {"kind": "cgroup-cpu", "group": group, "exists": False}
    stats = {}
    for line in (read(f"{d}/cpu.stat") or "").splitlines():
        k, _, v = line.partition(" ")
        if v.strip().isdigit():
            stats[k] = int(v)
    if v2:
        usage_ns = stats.get("usage_usec", 0) * 1000
        parts = (read(f"{d}/cpu.max") or "max 100000").split()
        q = parts[0] if parts else "max"
        p = parts[1] if len(parts) > 1 else "100000"
        quota = int(q) if q.isdigit() else None
        period = int(p) if p.isdigit() else 100000
    else:
        # v1 keeps CPU time in the cpuacct hierarchy, where the student's group
        # may not exist: add up its processes' own CPU time instead.
        usage_ns = None
        q = (read(f"{d}/cpu.cfs_quota_us") or "-1").strip()
        p = (read(f"{d}/cpu.cfs_period_us") or "100000").strip()
        quota = int(q) if q.isdigit() else None  # -1: no quota
        period = int(p) if p.isdigit() else 100000
    now = time.monotonic()
    procs = [int(x) for x in (read(f"{d}/cgroup.procs") or "").split() if x.isdigit()]
    ticks = {}
    for x in procs:
        st_ = read(f"/proc/{x}/stat")
        if st_:
            f = st_.rsplit(") ", 1)[-1].split()
            ticks[x] = int(f[11]) + int(f[12])
    pct = None
    prev = _last_cpu.get(d)
    if prev and now > prev["t"]:
        dt = now - prev["t"]
        if usage_ns is not None and prev["ns"] is not None and usage_ns >= prev["ns"]:
            pct = round((usage_ns - prev["ns"]) / (dt * 1e9) * 100, 1)
        elif usage_ns is None:
            used = sum(v - prev["ticks"][k] for k, v in ticks.items() if k in prev["ticks"])
            pct = round(used / HZ / dt * 100, 1)
    _last_cpu[d] = {"t": now, "ns": usage_ns, "ticks": ticks}
    return {
        "kind": "cgroup-cpu",
        "group": group,
        "exists": True,
        "version": "v2" if v2 else "v1",
        "pct": pct,
        "quotaPct": None if quota is None else round(quota / period * 100, 1),
        "quota": quota,
        "period": period,
        "throttled": stats.get("nr_throttled"),
        "periods": stats.get("nr_periods"),
        "procs": [proc(x) for x in procs[:MAX_PROCS]],
    }


# --- overlay -----------------------------------------------------------------


def opaque(path):
    for name in ("user.overlay.opaque", "trusted.overlay.opaque"):
        try:
            if os.getxattr(path, name) == b"y":
                return True
        except OSError:
            pass
    return False


def tree(top):
    """Entries below `top` (as the sandbox sees it), breadth first, bounded."""
    base = ROOT + top
    if not os.path.isdir(base):
        return None
    out = []
    todo = [""]
    while todo and len(out) < MAX_ENTRIES:
        rel = todo.pop(0)
        try:
            names = sorted(os.listdir(base + rel))
        except OSError:
            continue
        for n in names:
            if len(out) >= MAX_ENTRIES:
                break
            p = f"{rel}/{n}"
            try:
                st = os.lstat(base + p)
            except OSError:
                continue
            e = {"path": p[1:]}
            if stat.S_ISDIR(st.st_mode):
                e["type"] = "dir"
                if opaque(base + p):
                    e["opaque"] = True
                if p.count("/") < 4:
                    todo.append(p)
            elif stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                e["type"] = "whiteout"
            elif stat.S_ISLNK(st.st_mode):
                e["type"] = "link"
            else:
                e["type"] = "file"
                e["size"] = st.st_size
            out.append(e)
    return out


def overlay(spec):
    layers = {}
    for k in ("lower", "upper", "merged"):
        if spec.get(k):
            layers[k] = tree(spec[k])
    # Copied up: in upper as a file and in lower too.
    lower = {e["path"] for e in layers.get("lower") or [] if e["type"] == "file"}
    for e in layers.get("upper") or []:
        if e["type"] == "file" and e["path"] in lower:
            e["copiedUp"] = True
    mounted = False
    target = spec.get("merged")
    for line in (read("/proc/1/mountinfo") or "").splitlines():
        f = line.split()
        if len(f) > 4 and f[4] == target and " - overlay " in line:
            mounted = True
    return {"kind": "overlay", "mounted": mounted, "layers": layers}


# --- capabilities --------------------------------------------------------------


def file_caps(path):
    p = ROOT + path
    try:
        st = os.stat(p)
    except OSError:
        return {"path": path, "exists": False}
    out = {"path": path, "exists": True, "setuid": bool(st.st_mode & stat.S_ISUID), "uid": st.st_uid}
    try:
        raw = os.getxattr(p, "security.capability")
    except OSError:
        raw = None
    if raw and len(raw) >= 12:
        magic = int.from_bytes(raw[0:4], "little")
        perm = int.from_bytes(raw[4:8], "little")
        inh = int.from_bytes(raw[8:12], "little")
        if len(raw) >= 20:
            perm |= int.from_bytes(raw[12:16], "little") << 32
            inh |= int.from_bytes(raw[16:20], "little") << 32
        out["caps"] = {
            "version": (magic >> 24) & 0xFF,
            "effective": bool(magic & 1),
            "permitted": cap_names(perm),
            "inheritable": cap_names(inh),
        }
        if len(raw) >= 24:
            out["caps"]["rootid"] = int.from_bytes(raw[20:24], "little")
    return out


def proc_caps(name):
    match = [p for p in pids() if comm(p) == name]
    if not match:
        return {"name": name, "found": False}
    pid = match[-1]
    sets = {}
    for line in (read(f"/proc/{pid}/status") or "").splitlines():
        k, _, v = line.partition(":")
        if k in ("CapEff", "CapPrm", "CapBnd"):
            sets[k] = cap_names(int(v.strip(), 16))
    return {"name": name, "found": True, "pid": pid, "sets": sets}


def capabilities(spec):
    return {
        "kind": "capabilities",
        "files": [file_caps(f) for f in spec.get("files", [])],
        "processes": [proc_caps(n) for n in spec.get("processes", [])],
    }


# --- mounts --------------------------------------------------------------------

MAX_MOUNTS = 40
MAX_NAMESPACES = 8
FOLDED = ("/proc/", "/sys/")  # the sandbox's masks: dozens of them, the same in every copy


def unescape(field):
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_table(pid, under):
    """The mounts of `pid`'s mount namespace at or below `under`, as that
    process sees them (mountinfo paths are relative to its root: after a
    pivot_root, the new root is "/")."""
    text = read(f"/proc/{pid}/mountinfo", 1 << 20)
    if text is None:
        return None, 0
    prefix = under.rstrip("/") + "/"
    fold_here = not any(under.startswith(f) or under + "/" == f for f in FOLDED)
    out, folded = [], 0
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        f = head.split()
        t = tail.split()
        if not sep or len(f) < 6 or len(t) < 2:
            continue
        target = unescape(f[4])
        if not (target == under or target.startswith(prefix) or under == "/"):
            continue
        if fold_here and target.startswith(FOLDED) or len(out) >= MAX_MOUNTS:
            folded += 1
            continue
        out.append(
            {
                "id": int(f[0]),
                "parent": int(f[1]),
                "target": target,
                "root": unescape(f[3]),
                "ro": "ro" in f[5].split(","),
                "tags": f[6:],
                "fstype": t[0][:32],
                "source": unescape(t[1])[:120],
            }
        )
    return out, folded


def mounts(spec):
    under = spec.get("under") or "/"
    own = os.stat("/proc/1/ns/mnt").st_ino
    groups = {}
    for pid in pids():
        try:
            ino = os.stat(f"/proc/{pid}/ns/mnt").st_ino
        except OSError:
            continue
        groups.setdefault(ino, []).append(pid)
    out = []
    for ino, members in sorted(groups.items(), key=lambda kv: (kv[0] != own, kv[1][0])):
        if len(out) >= MAX_NAMESPACES:
            break
        # PID 1 for the sandbox's own table (a chrooted process of the same
        # namespace would see it cut down to its root); the oldest otherwise.
        table, folded = None, 0
        for pid in ([1] if ino == own else []) + members:
            table, folded = mount_table(pid, under)
            if table is not None:
                break
        if table is None:
            continue
        out.append(
            {
                "inode": ino,
                "sandbox": ino == own,
                "procs": [proc(p) for p in members[:6]],
                "mounts": table,
                "folded": folded,
            }
        )
    return {"kind": "mounts", "under": under, "namespaces": out}


KINDS = {
    "mounts": mounts,
    "namespaces": namespaces,
    "cgroup-cpu": cgroup_cpu,
    "overlay": overlay,
    "capabilities": capabilities,
}


def sample():
    out = []
    for spec in SPECS:
        try:
            out.append(KINDS[spec["type"]](spec))
        except Exception as e:  # one panel's trouble must not stop the others
            out.append({"kind": "error", "message": f"{type(e).__name__}: {e}"[:200]})
    return out


# A sample that says what the last one said is not sent (a heartbeat every few
# seconds keeps the page sure the reader lives), except for CPU charts, which
# plot every sample.
HEARTBEAT = 5.0
EVERY_SAMPLE = any(spec.get("type") == "cgroup-cpu" for spec in SPECS)


def main():
    last_body, last_sent = None, 0.0
    while True:
        t0 = time.monotonic()
        body = json.dumps(sample(), separators=(",", ":"))
        if EVERY_SAMPLE or body != last_body or t0 - last_sent >= HEARTBEAT:
            try:
                sys.stdout.write('{"t":%.3f,"panels":%s}\n' % (time.time(), body))
                sys.stdout.flush()
            except BrokenPipeError:
                return
            last_body, last_sent = body, t0
        time.sleep(max(0.05, INTERVAL - (time.monotonic() - t0)))


main()

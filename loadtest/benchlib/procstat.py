# What a server costs, read from /proc: CPU seconds, context switches, RSS, threads and
# processes, summed over the whole process tree (prefork's workers included), and how many
# client connections it actually holds (established sockets it has a descriptor for).
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("ascii", "replace")
    except OSError:
        return None


def parse_stat(text: str) -> dict:
    """Fields of /proc/<pid>/stat we use (comm may contain spaces and parentheses)."""
    rest = text[text.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); field n is rest[n - 3].
    return {
        "ppid": int(rest[1]),
        "utime": int(rest[11]) / CLK_TCK,
        "stime": int(rest[12]) / CLK_TCK,
        "cutime": int(rest[13]) / CLK_TCK,
        "cstime": int(rest[14]) / CLK_TCK,
        "threads": int(rest[17]),
        "rss": int(rest[21]) * PAGE,
    }


def parse_ctxt(text: str) -> tuple[int, int]:
    vol = invol = 0
    for line in text.splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            vol = int(line.split()[1])
        elif line.startswith("nonvoluntary_ctxt_switches:"):
            invol = int(line.split()[1])
    return vol, invol


def cpu_times(cpus: list[int]) -> tuple[float, float]:
    """(busy, total) jiffies summed over the given CPUs, from /proc/stat."""
    busy = total = 0.0
    want = {f"cpu{c}" for c in cpus}
    for line in (_read("/proc/stat") or "").splitlines():
        parts = line.split()
        if parts and parts[0] in want:
            v = [float(x) for x in parts[1:]]
            idle = v[3] + (v[4] if len(v) > 4 else 0)
            total += sum(v[:8])
            busy += sum(v[:8]) - idle
    return busy, total


def busy_share(before: tuple[float, float], after: tuple[float, float], ncpus: int) -> float:
    """How many of ncpus CPUs were busy between two cpu_times() readings (0..ncpus)."""
    total = after[1] - before[1]
    if total <= 0:
        return 0.0
    return (after[0] - before[0]) / total * ncpus


def read_pss(pid: int) -> int:
    """Proportional set size in bytes (shared pages split between their users): fair for
    prefork's workers, whose RSS sum counts the shared binary and libraries once per process."""
    for line in (_read(f"/proc/{pid}/smaps_rollup") or "").splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def process_tree(root: int) -> list[int]:
    """root and all its descendants alive now (scans /proc for parent links)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        text = _read(f"/proc/{name}/stat")
        if text is None:
            continue
        try:
            ppid = parse_stat(text)["ppid"]
        except (ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def socket_inodes(pids: list[int]) -> set[int]:
    """Inodes of the sockets the processes have descriptors for (shared ones once)."""
    out: set[int] = set()
    for pid in pids:
        base = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(base)
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"{base}/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                out.add(int(link[8:-1]))
    return out


def established(port: int, inodes: set[int], tables: tuple[str, ...] = ("/proc/net/tcp",
                                                                      "/proc/net/tcp6")) -> int:
    """Established TCP sockets with local port `port` whose inode is in `inodes`: the client
    connections a server holds (accepted, with a descriptor), not those still waiting in its
    listen backlog (established in the kernel, but nobody's descriptor yet)."""
    held: set[int] = set()  # by inode: a table read while sockets come and go can repeat a line
    for table in tables:
        text = _read(table)
        if not text:
            continue
        for line in text.splitlines()[1:]:
            parts = line.split()
            if len(parts) < 10 or parts[3] != "01":
                continue
            try:
                inode = int(parts[9])
                if inode in inodes and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    held.add(inode)
            except ValueError:
                continue
    return len(held)


def held_connections(root: int, port: int) -> int:
    return established(port, socket_inodes(process_tree(root)))


def cpu_delta(base: dict[int, "Cpu"], final: dict[int, "Cpu"]) -> tuple[float, float, float]:
    """(total, user, sys) CPU seconds a process tree used between two snapshots.

    Per process alive in `final`: its CPU plus what its reaped children used (cutime/cstime:
    prefork's exited workers), minus its value in `base`; minus what processes gone by `final`
    had used at `base` (their parent's cutime now holds their whole life)."""
    zero = Cpu(0.0, 0.0, 0.0, 0.0, 0.0)
    user = sys_ = total = 0.0
    for pid, now in final.items():
        b = base.get(pid, zero)
        user += now.user - b.user + now.child_user - b.child_user
        sys_ += now.sys - b.sys + now.child_sys - b.child_sys
        total += now.total - b.total + now.child_user - b.child_user + now.child_sys - b.child_sys
    for pid, b in base.items():
        if pid not in final:
            user -= b.user
            sys_ -= b.sys
            total -= b.total
    total = max(total, 0.0)
    ticks = user + sys_
    if ticks > 0:
        user, sys_ = total * user / ticks, total * sys_ / ticks
    else:
        user, sys_ = total, 0.0
    return total, user, sys_


@dataclass(frozen=True)
class Cpu:
    """One process's CPU seconds: ticks-based user/sys, a precise total, and reaped children's."""
    user: float
    sys: float
    total: float
    child_user: float
    child_sys: float


def read_cpu(pid: int, st: dict) -> Cpu:
    """/proc/<pid>/stat counts in clock ticks (10 ms), truncated per process: summed over 100
    short-lived prefork workers that loses up to a second. A single-threaded process's
    /proc/<pid>/schedstat gives its run time in nanoseconds instead."""
    total = st["utime"] + st["stime"]
    if st["threads"] == 1:
        text = _read(f"/proc/{pid}/schedstat")
        if text:
            try:
                total = max(total, int(text.split()[0]) / 1e9)
            except (ValueError, IndexError):
                pass
    return Cpu(st["utime"], st["stime"], total, st["cutime"], st["cstime"])


@dataclass
class Snapshot:
    cpu: dict[int, Cpu] = field(default_factory=dict)
    rss: int = 0
    pss: int = 0              # only in samples with tasks=True
    threads: int = 0
    processes: int = 0
    held: int = 0             # client connections held; only with tasks=True and a port


class TreeSampler:
    """Samples a process tree while a load runs.

    CPU: per process (a process's stat already sums all its threads, exited ones included)
    between two mark()s, see cpu_delta. Context switches: per thread
    (/proc/<pid>/task/<tid>/status), last value seen per thread; threads are sampled less often
    than RSS because reading 10,000 of them costs time on the client core. RSS: the sum of VmRSS
    over the tree, peak kept; PSS and the connections held (given the server's port) with the
    threads.
    """

    def __init__(self, root: int, interval: float = 0.1, task_interval: float = 1.0,
                 port: int | None = None):
        self.root = root
        self.port = port
        self.peak_held = 0
        self.marks: list[tuple[float, dict[int, Cpu]]] = []
        self.interval = interval
        self.task_interval = task_interval
        self.base_cpu: dict[int, Cpu] = {}
        self.final_pids: set[int] = set()
        self.base_ctxt: dict[tuple[int, int], tuple[int, int]] = {}
        self.last_cpu: dict[int, Cpu] = {}
        self.last_ctxt: dict[tuple[int, int], tuple[int, int]] = {}
        self.peak_rss = 0
        self.peak_pss = 0
        self.idle_pss = 0
        self.peak_threads = 0
        self.peak_processes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def sample(self, tasks: bool) -> Snapshot:
        snap = Snapshot()
        pids = process_tree(self.root)
        for pid in pids:
            text = _read(f"/proc/{pid}/stat")
            if text is None:
                continue
            st = parse_stat(text)
            snap.cpu[pid] = read_cpu(pid, st)
            snap.rss += st["rss"]
            snap.threads += st["threads"]
            snap.processes += 1
        ctxt: dict[tuple[int, int], tuple[int, int]] = {}
        if tasks:
            snap.pss = sum(read_pss(pid) for pid in snap.cpu)
            if self.port:
                snap.held = established(self.port, socket_inodes(list(snap.cpu)))
            for pid in pids:
                try:
                    tids = os.listdir(f"/proc/{pid}/task")
                except OSError:
                    continue
                for tid in tids:
                    text = _read(f"/proc/{pid}/task/{tid}/status")
                    if text is not None:
                        ctxt[(pid, int(tid))] = parse_ctxt(text)
        with self._lock:
            self.last_cpu.update(snap.cpu)
            self.last_ctxt.update(ctxt)
            self.peak_rss = max(self.peak_rss, snap.rss)
            self.peak_pss = max(self.peak_pss, snap.pss)
            self.peak_held = max(self.peak_held, snap.held)
            self.peak_threads = max(self.peak_threads, snap.threads)
            self.peak_processes = max(self.peak_processes, snap.processes)
            self.samples += 1
        return snap

    def baseline(self) -> Snapshot:
        """Call before the load starts: what the idle server holds."""
        snap = self.sample(tasks=True)
        self.base_cpu = dict(self.last_cpu)
        self.base_ctxt = dict(self.last_ctxt)
        with self._lock:
            self.peak_rss = snap.rss
            self.peak_pss = self.idle_pss = snap.pss
            self.peak_threads = snap.threads
            self.peak_processes = snap.processes
        return snap

    def mark(self) -> None:
        """A CPU snapshot of the tree, timed: the first and the last mark bound the window that
        totals() reports CPU and wall seconds over (call it right before and after the load)."""
        t0 = time.monotonic()
        cpu: dict[int, Cpu] = {}
        for pid in process_tree(self.root):
            text = _read(f"/proc/{pid}/stat")
            if text is not None:
                cpu[pid] = read_cpu(pid, parse_stat(text))
        with self._lock:
            self.marks.append(((t0 + time.monotonic()) / 2, cpu))

    def _loop(self) -> None:
        # the first full sample (PSS, connections held) early, so that a 1 s smoke run has one
        next_tasks = time.monotonic() + min(self.task_interval, 0.5)
        while not self._stop.is_set():
            now = time.monotonic()
            tasks = now >= next_tasks
            t0 = time.monotonic()
            self.sample(tasks=tasks)
            spent = time.monotonic() - t0
            if tasks:
                next_tasks = time.monotonic() + max(self.task_interval, 4 * spent)
            self._stop.wait(max(self.interval, 2 * spent))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tree-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops the background sampling and takes a last full sample."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.final_pids = set(self.sample(tasks=True).cpu)

    def totals(self) -> dict:
        """CPU over the window between the first and last mark() (wall_s is its length); without
        marks, between baseline() and stop(). Memory and context switches: the whole sampling."""
        with self._lock:
            if len(self.marks) >= 2:
                (t0, base), (t1, final) = self.marks[0], self.marks[-1]
                wall = t1 - t0
            else:
                base = self.base_cpu
                final = {p: c for p, c in self.last_cpu.items()
                         if p in (self.final_pids or set(self.last_cpu))}
                wall = None
            total, user, sys_ = cpu_delta(base, final)
            vol = invol = 0
            for key, (v, i) in self.last_ctxt.items():
                bv, bi = self.base_ctxt.get(key, (0, 0))
                vol += v - bv
                invol += i - bi
            return {
                "cpu_s": round(total, 4),
                "cpu_user_s": round(user, 4),
                "cpu_sys_s": round(sys_, 4),
                "wall_s": round(wall, 4) if wall is not None else None,
                "ctxt_voluntary": vol,
                "ctxt_involuntary": invol,
                "peak_rss_bytes": self.peak_rss,
                "peak_pss_bytes": self.peak_pss,
                "idle_pss_bytes": self.idle_pss,
                "peak_held_connections": self.peak_held if self.port else None,
                "peak_threads": self.peak_threads,
                "peak_processes": self.peak_processes,
                "samples": self.samples,
            }

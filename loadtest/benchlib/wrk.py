# Running wrk once, bounded in time, pinned to the client CPUs, and reading its figures (the
# JSON line printed by wrk/bench.lua, which checks every response) and its own CPU use
# (wait4's rusage). The caller's `mark` runs right before wrk starts and right after it exits,
# so that the server's cost is read over exactly wrk's lifetime.
from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .servers import pinned

SCRIPT = Path(__file__).resolve().parent.parent / "wrk" / "bench.lua"
MARK = "GEARBOX_WRK_JSON "


class WrkError(Exception):
    pass


def command(url: str, method: str, body: int, expect: str, connections: int, threads: int,
            duration: float, cpus: list[int] | None, timeout_s: int = 5) -> list[str]:
    """expect: the response body every answer must carry ("=echo": the request's own body)."""
    threads = max(1, min(threads, connections))
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s",
            "--timeout", f"{timeout_s}s", "--latency", "-s", str(SCRIPT), url, "--", method,
            str(body), expect]
    return pinned(cpus, argv)


def incorrect(figures: dict) -> dict[str, int]:
    """What went wrong in a wrk run, by kind (only the kinds that happened)."""
    e = dict(figures["errors"])
    e["bad status"] = figures.get("bad_status", 0)
    e["bad body"] = figures.get("bad_body", 0)
    e.pop("status", None)  # wrk's own count of status >= 400, included in "bad status"
    return {k: v for k, v in e.items() if v}


def parse_output(text: str) -> dict:
    """The figures from wrk's stdout; raises WrkError when the JSON line is missing."""
    for line in text.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    raise WrkError("wrk printed no result line: " + " | ".join(text.strip().splitlines()[-3:]))


def run(argv: list[str], duration: float, grace: float = 30.0, mark=None) -> dict:
    """Runs wrk; returns its figures plus wall_s, cpu_s (wrk's own) and the command line.

    mark() (if given) is called right before wrk starts and right after it exits. wrk is killed
    (and WrkError raised) if it runs longer than duration + grace seconds.
    """
    with tempfile.TemporaryFile() as out:
        if mark is not None:
            mark()
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        killed = threading.Event()

        def guard() -> None:
            if proc.returncode is None:
                killed.set()
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

        timer = threading.Timer(duration + grace, guard)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.monotonic() - t0
            if mark is not None:
                mark()
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if killed.is_set():
        raise WrkError(f"wrk ran past {duration + grace:.0f} s and was killed")
    if proc.returncode != 0:
        raise WrkError(f"wrk exited with {proc.returncode}: {text.strip()[-300:]}")
    figures = parse_output(text)
    figures["wall_s"] = round(wall, 3)
    figures["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)
    figures["argv"] = argv
    return figures

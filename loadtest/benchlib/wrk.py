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
            duration: float, cpus: list[int] | None, timeout_s: int = 5,
            pipeline: int = 1) -> list[str]:
    """expect: the response body every answer must carry ("=echo": the request's own body);
    pipeline: requests sent back to back per send (1: one at a time)."""
    threads = max(1, min(threads, connections))
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(duration))}s",
            "--timeout", f"{timeout_s}s", "--latency", "-s", str(SCRIPT), url, "--", method,
            str(body), expect] + ([str(pipeline)] if pipeline > 1 else [])
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


class Process:
    """A wrk (or other load generator) process: its output in a temporary file, its rusage from
    wait4, killed by PID if it runs past its deadline."""

    def __init__(self, argv: list[str], deadline_s: float):
        self.argv = argv
        self.out = tempfile.TemporaryFile()
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT)
        self.killed = threading.Event()
        self.timer = threading.Timer(deadline_s, self._kill)
        self.timer.start()
        self.wall = 0.0
        self.cpu = 0.0

    def _kill(self) -> None:
        if self.proc.returncode is None:
            self.killed.set()
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self) -> None:
        try:
            _, status, usage = os.wait4(self.proc.pid, 0)
            self.wall = time.monotonic() - self.t0
        finally:
            self.timer.cancel()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.cpu = usage.ru_utime + usage.ru_stime

    def text(self) -> str:
        self.out.seek(0)
        text = self.out.read().decode("utf-8", "replace")
        self.out.close()
        return text

    def figures(self, what: str = "wrk") -> dict:
        text = self.text()
        if self.killed.is_set():
            raise WrkError(f"{what} ran past its deadline and was killed")
        if self.proc.returncode != 0:
            raise WrkError(f"{what} exited with {self.proc.returncode}: {text.strip()[-300:]}")
        figures = parse_output(text)
        figures["wall_s"] = round(self.wall, 3)
        figures["cpu_s"] = round(self.cpu, 3)
        figures["argv"] = self.argv
        return figures


def run(argv: list[str], duration: float, grace: float = 30.0, mark=None,
        background: list[str] | None = None) -> dict:
    """Runs wrk; returns its figures plus wall_s, cpu_s (wrk's own) and the command line.

    mark() (if given) is called right before wrk starts and right after it exits. A background
    wrk (argv) runs alongside, started first; its figures go to figures["background"] and its
    CPU counts as the client's. wrk is killed (and WrkError raised) if it runs longer than
    duration + grace seconds.
    """
    if mark is not None:
        mark()
    bg = Process(background, duration + grace) if background else None
    main = Process(argv, duration + grace)
    try:
        main.wait()
        if mark is not None:
            mark()
    finally:
        if bg is not None:
            bg.wait()
    figures = main.figures()
    if bg is not None:
        figures["background"] = bg.figures("the background wrk")
        figures["cpu_s"] = round(figures["cpu_s"] + bg.cpu, 3)
    return figures

# The open-loop scenario's load: loadtest/openloop (Go), requests due at a fixed rate and their
# latency measured from the due time, pinned to the client CPUs; wrk-style figures.
from __future__ import annotations

from pathlib import Path

from . import servers, wrk

SOURCE = Path(__file__).resolve().parent.parent / "openloop" / "main.go"


class OpenLoopError(Exception):
    pass


def run(workdir: Path, port: int, path: str, expect: str, rate: int, conns: int,
        duration: float, cpus: list[int], mark, timeout_s: float = 5.0) -> dict:
    try:
        binary = servers.build_go(SOURCE, workdir)
    except servers.StartError as e:
        raise OpenLoopError(str(e)) from None
    argv = servers.pinned(cpus, [binary, "-addr", f"127.0.0.1:{port}", "-path", path,
                                 "-rate", str(rate), "-conns", str(conns),
                                 "-duration", f"{duration:g}s", "-timeout", f"{timeout_s:g}s",
                                 "-expect", expect])
    mark()
    proc = wrk.Process(argv, duration + timeout_s + 30)
    try:
        proc.wait()
        mark()
    finally:
        if proc.proc.returncode is None:
            proc.proc.kill()
    try:
        return proc.figures("openloop")
    except wrk.WrkError as e:
        raise OpenLoopError(str(e)) from None

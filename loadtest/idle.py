#!/usr/bin/env python3
# Side by side in one run, per backend: wrk plaintext at 64 and 1,000 connections (requests/s
# and per server core) and the server's memory idle and holding 1,000 idle keep-alive
# connections. Server pinned to CPU 0, clients to CPU 1. Prints one block per backend.
#   python3 loadtest/idle.py --build build [--backends prefork,thread,pool]
from __future__ import annotations

import argparse
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import procstat, servers  # noqa: E402


def tree_figures(root: int) -> tuple[float, float, float, int, int]:
    """(RSS MiB, PSS MiB, CPU s, threads, processes) summed over the server's process tree."""
    rss = pss = cpu = 0.0
    threads = 0
    pids = procstat.process_tree(root)
    for pid in pids:
        text = procstat._read(f"/proc/{pid}/stat")
        if text is None:
            continue
        st = procstat.parse_stat(text)
        rss += st["rss"]
        cpu += st["utime"] + st["stime"] + st["cutime"] + st["cstime"]
        threads += st["threads"]
        pss += procstat.read_pss(pid)
    return rss / 2**20, pss / 2**20, cpu, threads, len(pids)


def wrk(port: int, conns: int, root: int) -> str:
    cpu0, t0 = tree_figures(root)[2], time.monotonic()
    out = subprocess.run(servers.pinned([1], ["wrk", "-t1", f"-c{conns}", "-d5s", "--timeout", "5s",
                                              f"http://127.0.0.1:{port}/plaintext"]),
                         capture_output=True, text=True).stdout
    share = (tree_figures(root)[2] - cpu0) / (time.monotonic() - t0)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Socket errors:.*", out)
    return (f"{rps:,.0f} req/s, {rps / max(share, 0.01):,.0f} per server core"
            f" ({errors.group(0) if errors else 'no socket errors'})")


def hold_idle(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
    for s in socks:
        data = b""
        while not data.endswith(b"Hello, World!"):
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("connection closed before its response")
            data += chunk
    return socks


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--build", default="build")
    p.add_argument("--backends", default="prefork,thread,pool")
    p.add_argument("--connections", type=int, default=1000)
    args = p.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    binary = str(Path(args.build) / "gearbox")
    for backend in args.backends.split(","):
        # prefork holds one connection per worker: allow enough workers for the idle test.
        extra = ["--log-level", "warn"]
        if backend == "prefork":
            extra += ["--workers", str(args.connections + 100)]
        log = Path(tempfile.mkdtemp()) / f"{backend}.log"
        server = servers.start_gearbox(binary, backend, "echo", [0], log, extra=extra)
        try:
            time.sleep(1.0)
            idle = tree_figures(server.pid)
            print(f"{backend}: plaintext c=64: {wrk(server.port, 64, server.pid)}")
            print(f"{backend}: plaintext c=1000: {wrk(server.port, 1000, server.pid)}")
            time.sleep(2.0)
            socks = hold_idle(server.port, args.connections)
            time.sleep(1.0)
            held = tree_figures(server.pid)
            for s in socks:
                s.close()
            print(f"{backend}: idle: RSS {idle[0]:.1f} MiB, PSS {idle[1]:.1f} MiB, "
                  f"{idle[3]} threads, {idle[4]} processes")
            print(f"{backend}: {args.connections} idle keep-alive connections: RSS {held[0]:.1f} MiB, "
                  f"PSS {held[1]:.1f} MiB, {held[3]} threads, {held[4]} processes; PSS per "
                  f"connection {(held[1] - idle[1]) * 1024 / args.connections:.1f} KiB")
            sys.stdout.flush()
        finally:
            servers.stop(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())

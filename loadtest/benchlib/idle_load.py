# The idle scenarios' load: N keep-alive connections, one request each, then held idle while the
# server's memory and the connections it holds are read. Non-blocking sockets and selectors, so
# that 10,000 connections need no thread each on the client side.
from __future__ import annotations

import errno
import selectors
import socket
import time

from .matrix import ECHO

BATCH = 256          # connections being set up at once (the listen backlog is 4096 here)


class _Conn:
    __slots__ = ("sock", "sent", "buf", "t0", "done", "status", "body_ok")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.sent = False
        self.buf = bytearray()
        self.t0 = time.monotonic()
        self.done = 0.0
        self.status = 0
        self.body_ok = False


def _response_complete(c: _Conn, expect: bytes) -> bool:
    end = c.buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = bytes(c.buf[:end]).decode("latin-1").split("\r\n")
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if len(c.buf) < end + 4 + length:
        return False
    parts = head[0].split(" ")
    c.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    c.body_ok = bytes(c.buf[end + 4:end + 4 + length]) == expect
    return True


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {q: 0 for q in ("50", "75", "90", "99", "99.9", "99.99")} | {"min": 0, "max": 0,
                                                                            "mean": 0, "stdev": 0}
    v = sorted(values)

    def at(q: float) -> int:
        return int(v[min(len(v) - 1, int(q / 100 * len(v)))])

    mean = sum(v) / len(v)
    return {"min": int(v[0]), "max": int(v[-1]), "mean": round(mean, 1),
            "stdev": round((sum((x - mean) ** 2 for x in v) / len(v)) ** 0.5, 1),
            "50": at(50), "75": at(75), "90": at(90), "99": at(99), "99.9": at(99.9),
            "99.99": at(99.99)}


def hold(port: int, path: str, n: int, expect: str, sampler, mark, settle_s: float = 1.0,
         timeout_s: float = 8.0) -> dict:
    """Opens n connections (BATCH at a time), sends each one GET, reads its answer, and holds
    them all; then, after settle_s, has `sampler` take a full sample (PSS, connections held)
    and closes them. Connections unanswered timeout_s after the last one was opened count as
    timeouts (a server holding fewer connections than offered leaves them in its backlog).
    Returns wrk-style figures."""
    want = b"" if expect == ECHO else expect.encode()
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    conns: list[_Conn] = []
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    pending = 0           # opened, not yet answered
    opened = 0
    t_start = time.monotonic()
    cpu0 = time.process_time()
    mark()
    last_open = time.monotonic()
    try:
        while True:
            while opened < n and pending < BATCH:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                err = s.connect_ex(("127.0.0.1", port))
                opened += 1
                if err not in (0, errno.EINPROGRESS):
                    errors["connect"] += 1
                    s.close()
                    continue
                c = _Conn(s)
                conns.append(c)
                sel.register(s, selectors.EVENT_WRITE, c)
                pending += 1
                last_open = time.monotonic()
            if pending == 0 and opened >= n:
                break
            if time.monotonic() - last_open > timeout_s:
                break
            for key, ev in sel.select(timeout=0.2):
                c = key.data
                try:
                    if not c.sent:
                        if c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                            raise ConnectionRefusedError()
                        c.sock.send(request)
                        c.sent = True
                        sel.modify(c.sock, selectors.EVENT_READ, c)
                        continue
                    chunk = c.sock.recv(65536)
                    if not chunk:
                        raise ConnectionResetError()
                    c.buf += chunk
                    if _response_complete(c, want):
                        c.done = time.monotonic()
                        sel.unregister(c.sock)
                        pending -= 1
                except OSError:
                    errors["read" if c.sent else "connect"] += 1
                    sel.unregister(c.sock)
                    c.sock.close()
                    c.done = -1
                    pending -= 1
        answered = [c for c in conns if c.done > 0]
        errors["timeout"] = sum(1 for c in conns if c.done == 0)
        time.sleep(settle_s)
        sampler.sample(tasks=True)  # memory and connections held, all of them idle now
        mark()
        wall = time.monotonic() - t_start
    finally:
        for c in conns:
            try:
                c.sock.close()
            except OSError:
                pass
        sel.close()
    correct = sum(1 for c in answered if c.status == 200 and c.body_ok)
    return {
        "duration_us": int(wall * 1e6), "requests": len(answered), "bytes": 0,
        "correct": correct,
        "bad_status": sum(1 for c in answered if c.status != 200),
        "bad_body": sum(1 for c in answered if c.status == 200 and not c.body_ok),
        "errors": errors,
        "latency_us": _percentiles([(c.done - c.t0) * 1e6 for c in answered]),
        "wall_s": round(wall, 3), "cpu_s": round(time.process_time() - cpu0, 3),
        "argv": ["idle_load.hold", str(port), path, str(n)],
    }

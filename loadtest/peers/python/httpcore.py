# The HTTP/1.1 request handling every Python peer shares, so that what differs between them is the
# concurrency model alone: parsing a request head, Content-Length bodies, keep-alive, gearbox's
# echo-mode endpoints, and the /cpu burn. Standard library only.
"""Shared by the Python peers (multiprocessing, threading, ThreadPoolExecutor, asyncio, uvloop).

Endpoints (as gearbox's echo mode): GET /plaintext -> "Hello, World!"; GET /health -> "ok";
GET /delay/<ms> -> "done" after <ms> ms of waiting (the model decides how it waits);
GET /cpu/<ms> -> "done" after <ms> ms of computation (a pure-Python loop, calibrated at start-up,
holding the GIL); a request with a body -> the body back with its Content-Type. HTTP/1.1 keeps
the connection unless "Connection: close"; HTTP/1.0 closes it unless "keep-alive". Bodies must
come with Content-Length (a chunked request body gets 411 and the connection is closed).
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from email.utils import formatdate

MAX_HEAD = 16 * 1024
MAX_BODY = 1 << 20
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 411: "Length Required",
           413: "Content Too Large", 431: "Request Header Fields Too Large"}


class BadRequest(Exception):
    def __init__(self, status: int, why: str):
        super().__init__(why)
        self.status = status


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]      # lower-case names; repeated fields joined with ", "
    content_length: int

    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.1":
            return "close" not in tokens
        return "keep-alive" in tokens


def parse_head(head: bytes) -> Request:
    """The request line and header fields (the head without its final CRLF CRLF)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # latin-1 decodes every byte; kept for clarity
        raise BadRequest(400, "undecodable head")
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[1]:
        raise BadRequest(400, "bad request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise BadRequest(400, "bad header field")
        key = name.lower()
        value = value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if "transfer-encoding" in headers:
        raise BadRequest(411, "chunked request bodies are not supported")
    length = 0
    if "content-length" in headers:
        cl = headers["content-length"]
        if not cl.isdigit():
            raise BadRequest(400, "bad Content-Length")
        length = int(cl)
        if length > MAX_BODY:
            raise BadRequest(413, "body too large")
    return Request(parts[0], parts[1], parts[2], headers, length)


def response(status: int, body: bytes, keep_alive: bool, ctype: str = "text/plain") -> bytes:
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
            f"Server: gearbox-peer\r\nDate: {formatdate(usegmt=True)}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n")
    if not keep_alive:
        head += "Connection: close\r\n"
    return head.encode("latin-1") + b"\r\n" + body


def _ms(rest: str) -> int | None:
    return int(rest) if rest.isdigit() and len(rest) <= 6 and int(rest) <= 60000 else None


@dataclass
class Plan:
    """What to do for a request: answer now, wait `ms` first, or compute `ms` first."""
    kind: str                    # "reply", "delay" or "cpu"
    status: int = 200
    body: bytes = b""
    ctype: str = "text/plain"
    ms: int = 0


def plan(req: Request, body: bytes) -> Plan:
    if req.content_length or body:
        return Plan("reply", body=body, ctype=req.headers.get("content-type",
                                                              "application/octet-stream"))
    path = req.target.split("?", 1)[0]
    if req.method not in ("GET", "HEAD"):
        return Plan("reply", 404, b"not found")
    if path == "/plaintext":
        return Plan("reply", body=b"Hello, World!")
    if path == "/health":
        return Plan("reply", body=b"ok")
    for prefix, kind in (("/delay/", "delay"), ("/cpu/", "cpu")):
        if path.startswith(prefix):
            ms = _ms(path[len(prefix):])
            if ms is None:
                return Plan("reply", 400, b"bad milliseconds")
            return Plan(kind, body=b"done", ms=ms)
    return Plan("reply", 404, b"not found")


def _loop(n: int) -> int:
    x = 0x9E3779B97F4A7C15
    m = (1 << 64) - 1
    for _ in range(n):
        x ^= (x << 13) & m
        x ^= x >> 7
        x ^= (x << 17) & m
    return x


_PER_MS = 0


def calibrate() -> int:
    """Loop steps per millisecond of this interpreter: the best of a few trials of thread CPU
    time (a busy machine only makes a trial slower)."""
    global _PER_MS
    n, best = 20000, float("inf")
    for _ in range(5):
        t = time.thread_time()
        _loop(n)
        best = min(best, time.thread_time() - t)
    _PER_MS = max(1, int(n / (max(best, 1e-6) * 1000)))
    return _PER_MS


def burn(ms: int) -> None:
    _loop(ms * (_PER_MS or calibrate()))


# ---- the blocking connection, shared by the multiprocessing, threading and pool peers ----

class BlockingConnection:
    """One client connection read with blocking recv into a buffer (pipelining kept)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def read_request(self) -> tuple[Request, bytes] | None:
        """The next request and its body; None at a clean end of the connection."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self.buf) > MAX_HEAD:
                raise BadRequest(431, "head too large")
            if not self._fill():
                if self.buf:
                    raise BadRequest(400, "connection closed inside a request head")
                return None
        req = parse_head(bytes(self.buf[:end]))
        del self.buf[:end + 4]
        while len(self.buf) < req.content_length:
            if not self._fill():
                raise BadRequest(400, "connection closed inside a body")
        body = bytes(self.buf[:req.content_length])
        del self.buf[:req.content_length]
        return req, body

    def pending(self) -> bool:
        return bool(self.buf)

    def serve_one(self, give_up=None) -> bool:
        """Reads and answers one request (waiting with time.sleep, computing on this thread).
        give_up(): asked before answering; True closes the connection after this answer (with
        "Connection: close"), for a model that must free itself for a waiting connection.
        Returns whether the connection stays open."""
        try:
            got = self.read_request()
        except BadRequest as e:
            self.sock.sendall(response(e.status, str(e).encode(), False))
            return False
        except OSError:
            return False
        if got is None:
            return False
        req, body = got
        p = plan(req, body)
        if p.kind == "delay":
            time.sleep(p.ms / 1000)
        elif p.kind == "cpu":
            burn(p.ms)
        keep = req.keep_alive() and not (give_up is not None and not self.buf and give_up())
        try:
            self.sock.sendall(response(p.status, b"" if req.method == "HEAD" else p.body, keep,
                                       p.ctype))
        except OSError:
            return False
        return keep

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def serve_connection(sock: socket.socket) -> None:
    """A connection served to its end on the calling thread (thread per connection)."""
    conn = BlockingConnection(sock)
    try:
        while conn.serve_one():
            pass
    finally:
        conn.close()


# ---- command line and start-up, shared by every peer ----

def arguments(about: str, workers_help: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=about)
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0 = any)")
    if workers_help:
        p.add_argument("--workers", type=int, default=0, help=workers_help)
    return p.parse_args()


def listener(addr: str, backlog: int = 4096) -> socket.socket:
    host, port = addr.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(backlog)
    return s


def announce(name: str, sock: socket.socket, detail: str) -> None:
    host, port = sock.getsockname()[:2]
    print(f"{name}: listening on {host}:{port} ({detail})", file=sys.stderr, flush=True)


def exit_on_sigterm() -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))


def cpus() -> int:
    return len(os.sched_getaffinity(0))

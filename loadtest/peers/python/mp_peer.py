#!/usr/bin/env python3
# Python `multiprocessing`-style pre-forked workers: N processes (os.fork, as gunicorn's sync
# workers) blocking in accept() on one shared listening socket, each serving one connection at a
# time. A process is a whole interpreter: no shared GIL, but its own memory. A worker keeps a
# connection alive while no other connection waits in the listen queue; when one does, it answers
# with "Connection: close" and takes the next (a blocking process can hold only one).
"""py-mp: pre-forked worker processes on one listening socket, blocking I/O."""
import os
import select
import signal
import socket
import sys

import httpcore


def worker(sock: socket.socket) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def others_waiting() -> bool:
        return bool(select.select([sock], [], [], 0)[0])

    while True:
        try:
            raw, _ = sock.accept()
        except InterruptedError:
            continue
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = httpcore.BlockingConnection(raw)
        try:
            while conn.serve_one(give_up=others_waiting):
                pass
        except Exception:
            pass
        conn.close()


def main() -> None:
    args = httpcore.arguments(__doc__, "worker processes (default 2 x CPUs + 1, gunicorn's advice)")
    n = args.workers or 2 * httpcore.cpus() + 1
    httpcore.calibrate()
    sock = httpcore.listener(args.listen)
    children = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            try:
                worker(sock)
            finally:
                os._exit(0)
        children.append(pid)

    def stop(*_):
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    httpcore.announce("py-mp", sock, f"{n} worker processes")
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        print(f"py-mp: worker {pid} exited ({status})", file=sys.stderr, flush=True)
        children.remove(pid)
        if not children:
            break
    sys.exit(1)


if __name__ == "__main__":
    main()

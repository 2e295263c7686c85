#!/usr/bin/env python3
# Python `concurrent.futures.ThreadPoolExecutor`: a bounded pool of threads. The accept loop
# submits each connection to the pool; a pool thread serves one request of it and, if other
# connections are waiting for a thread, submits the connection again (to the back of the queue)
# instead of keeping the thread, so that keep-alive connections share the pool fairly.
"""py-pool: accepted connections served by a ThreadPoolExecutor, a request per turn."""
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import httpcore


class Pool:
    def __init__(self, workers: int | None):
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="peer")
        self.lock = threading.Lock()
        self.queued = 0  # submitted turns no thread has started yet

    def submit(self, conn: httpcore.BlockingConnection) -> None:
        with self.lock:
            self.queued += 1
        self.executor.submit(self.turn, conn)

    def others_waiting(self) -> bool:
        return self.queued > 0

    def turn(self, conn: httpcore.BlockingConnection) -> None:
        with self.lock:
            self.queued -= 1
        try:
            while conn.serve_one():
                if self.others_waiting() and not conn.pending():
                    self.submit(conn)  # keep-alive, but give the thread to the next in line
                    return
        except Exception:  # a connection's failure must not kill a pool thread's next turn
            pass
        conn.close()


def main() -> None:
    args = httpcore.arguments(__doc__, "pool threads (default: ThreadPoolExecutor's own, "
                                       "min(32, CPUs + 4))")
    httpcore.calibrate()
    sock = httpcore.listener(args.listen)
    pool = Pool(args.workers or None)
    httpcore.exit_on_sigterm()
    httpcore.announce("py-pool", sock, f"ThreadPoolExecutor, {pool.executor._max_workers} threads")
    while True:
        conn, _ = sock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pool.submit(httpcore.BlockingConnection(conn))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# Python `threading`: a thread per connection, blocking I/O (what socketserver.ThreadingMixIn
# does). Threads wait on the network in parallel, but only one runs Python code at a time: the GIL.
"""py-thread: one threading.Thread per accepted connection, serving it to its end."""
import socket
import threading

import httpcore


def main() -> None:
    args = httpcore.arguments(__doc__)
    httpcore.calibrate()
    sock = httpcore.listener(args.listen)
    httpcore.exit_on_sigterm()
    httpcore.announce("py-thread", sock, "a thread per connection")
    while True:
        conn, _ = sock.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=httpcore.serve_connection, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()

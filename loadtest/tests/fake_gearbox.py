#!/usr/bin/env python3
# A stand-in for the gearbox binary, for testing the load-test runner without a C++ build:
# same flags, same "listening on" line, same endpoints, slow (Python threads) but correct.
"""Usage: fake_gearbox.py --backend thread|forky|broken|dies --mode echo|proxy --listen ADDR
   [--upstream HOST:PORT]

Backends: "thread" serves with a thread per connection; "forky" also forks one idle child
(tests process-tree sums); "broken" exits at once with an error; "dies" serves and then
exits after 0.3 s; "lost" is listed as unavailable.
"""
import http.client
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HELP = """gearbox (stand-in)
Usage:
  fake_gearbox [OPTION...]

  -b, --backend arg          concurrency backend (default: thread)
      --mode arg             echo or proxy
      --listen arg           address
      --max-connections arg  connections served at once (default 10000)

Backends:
  thread      a thread per connection
  forky       a thread per connection and one idle child process
  broken      fails at start
  dies        dies under load
  lost        io_uring (unavailable here: not permitted)
"""


def arg(name, default=None):
    argv = sys.argv[1:]
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = None

    def log_message(self, *a):
        pass

    def reply(self, body, ctype="text/plain"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def proxied(self, method, body=None):
        host, port = self.upstream.rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        c.request(method, self.path, body=body)
        r = c.getresponse()
        data = r.read()
        c.close()
        self.reply(data, r.getheader("Content-Type", "text/plain"))

    def do_GET(self):
        if self.upstream:
            return self.proxied("GET")
        p = self.path
        if p == "/plaintext":
            return self.reply(b"Hello, World!")
        if p == "/health":
            return self.reply(b"ok")
        if p.startswith("/delay/"):
            time.sleep(int(p.split("/")[2]) / 1000)
            return self.reply(b"delayed")
        if p.startswith("/cpu/"):
            end = time.thread_time() + int(p.split("/")[2]) / 1000
            while time.thread_time() < end:
                pass
            return self.reply(b"burnt")
        return self.reply(self.requestline.encode())

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        if self.upstream:
            return self.proxied("POST", body)
        self.reply(body, self.headers.get("Content-Type", "application/octet-stream"))


def main():
    if "--help" in sys.argv:
        print(HELP)
        return 0
    backend = arg("--backend", "thread")
    mode = arg("--mode", "echo")
    if backend == "broken":
        print("gearbox: backend broken: cannot start", file=sys.stderr)
        return 1
    if backend == "lost":
        print('gearbox: backend "lost" is not available here: not permitted', file=sys.stderr)
        return 2
    if backend not in ("thread", "forky", "dies"):
        print(f'gearbox: unknown backend "{backend}"', file=sys.stderr)
        return 2
    host, port = arg("--listen", "127.0.0.1:0").rsplit(":", 1)
    Handler.upstream = arg("--upstream") if mode == "proxy" else None
    ThreadingHTTPServer.request_queue_size = 1024
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer((host, int(port)), Handler)
    child = None
    if backend == "forky":
        child = os.fork()
        if child == 0:
            signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
            while True:
                time.sleep(1)

    def stop(*_):
        if child:
            os.kill(child, signal.SIGTERM)
            os.waitpid(child, 0)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    if backend == "dies":
        signal.signal(signal.SIGALRM, lambda *a: os._exit(3))
        signal.setitimer(signal.ITIMER_REAL, 0.3)
    print(f"gearbox: listening on {host}:{server.server_address[1]} (backend {backend}, mode {mode})",
          file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

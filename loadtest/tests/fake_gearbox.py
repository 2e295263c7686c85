#!/usr/bin/env python3
# A stand-in for the gearbox binary, for testing the load-test runner without a C++ build:
# same flags, same "listening on" line, same endpoints, slow (Python threads) but correct.
"""Usage: fake_gearbox.py --backend NAME --mode echo|proxy --listen ADDR [--upstream HOST:PORT]

Backends (see HELP): "thread" serves with a thread per connection; "forky" also forks one idle
child (tests process-tree sums); "broken" exits at once with an error; "refused" fails to start
with "Resource temporarily unavailable"; "dies" serves and then exits after 0.3 s; "lost" is
listed as unavailable. The rest each have one defect the runner must catch: "shortcut" answers
/plaintext itself in proxy mode; "shorty" sends a POST echo's Content-Length and closes short
(as the Go peer once did); "capped" holds at most 8 connections at once, 1 MiB each; "lingers"
burns CPU after each connection closes; "wrongbody" gets every 7th /plaintext body wrong;
"flaky500" answers every 4th request with 500. With --admin-listen every backend serves GET
/metrics there (its responses counted in gearbox_http_requests_total), except two defects:
"badmetrics" answers /metrics 200 without that counter, "noadmin" never listens there.
"""
import http.client
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HELP = """gearbox (stand-in)
Usage:
  fake_gearbox [OPTION...]

  -b, --backend arg          concurrency backend (default: thread)
      --mode arg             echo or proxy
      --listen arg           address
      --max-connections arg  connections served at once (default 10000)
      --workers N            forky: worker processes; lost: event loops (default
                             1)
      --threads N            thread/capped: ignored worker threads (default 0)
      --admin-listen ADDR:PORT  serve /metrics on this address (default off)

Backends:
  thread      a pool of threads (stand-in)
  forky       threads and one idle child process
  broken      fails at start
  refused     fails at start
  dies        dies under load
  lost        io_uring (unavailable here: not permitted)
  shortcut    a proxy that answers /plaintext itself
  shorty      an echo that closes short
  capped      eight workers, one connection each
  lingers     burns CPU after a connection closes
  wrongbody   a wrong body now and then
  flaky500    a 500 now and then
  badmetrics  a /metrics without its counters
  noadmin     no admin listener
"""

BACKENDS = ("thread", "forky", "dies", "shortcut", "shorty", "capped", "lingers", "wrongbody",
            "flaky500", "badmetrics", "noadmin")


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
    backend = "thread"
    count = 0
    count_lock = threading.Lock()

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()
        if self.backend == "capped":
            self.ballast = bytearray(b"x" * (1 << 20))  # 1 MiB per connection held, touched

    def finish(self):
        super().finish()
        if self.backend == "lingers":
            end = time.thread_time() + 0.5
            while time.thread_time() < end:
                pass

    def nth(self):
        with Handler.count_lock:
            Handler.count += 1
            return Handler.count

    def reply(self, body, ctype="text/plain"):
        if self.backend == "flaky500" and self.nth() % 4 == 0:
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            Admin.count("5xx")
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        Admin.count("2xx")

    def proxied(self, method, body=None):
        host, port = self.upstream.rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        c.request(method, self.path, body=body)
        r = c.getresponse()
        data = r.read()
        c.close()
        self.reply(data, r.getheader("Content-Type", "text/plain"))

    def do_GET(self):
        p = self.path
        if self.upstream and not (self.backend == "shortcut" and p == "/plaintext"):
            return self.proxied("GET")
        if p == "/plaintext":
            if self.backend == "wrongbody" and self.nth() % 7 == 0:
                return self.reply(b"Hello, World?")
            return self.reply(b"Hello, World!")
        if p == "/health":
            return self.reply(b"ok")
        if p.startswith("/delay/"):
            time.sleep(int(p.split("/")[2]) / 1000)
            return self.reply(b"done")
        if p.startswith("/cpu/"):
            end = time.thread_time() + int(p.split("/")[2]) / 1000
            while time.thread_time() < end:
                pass
            return self.reply(b"done")
        return self.reply(self.requestline.encode())

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        if self.backend == "shorty":  # answers while the body is still coming, then closes
            self.rfile.read(min(n, 512))
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            self.wfile.write(b"x" * min(n, 512))
            self.close_connection = True
            return
        body = self.rfile.read(n)
        if self.upstream:
            return self.proxied("POST", body)
        self.reply(body, self.headers.get("Content-Type", "application/octet-stream"))


class Admin(BaseHTTPRequestHandler):
    """The admin listener: GET /metrics, one connection per scrape, as gearbox's."""
    protocol_version = "HTTP/1.0"
    responses = {"2xx": 0, "5xx": 0}
    lock = threading.Lock()

    @classmethod
    def count(cls, code):
        with cls.lock:
            cls.responses[code] += 1

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path != "/metrics":
            self.send_error(404)
            return
        with self.lock:
            lines = [f'gearbox_http_requests_total{{method="GET",code="{c}"}} {n}'
                     for c, n in self.responses.items()]
        if Handler.backend == "badmetrics":
            lines = ["# HELP gearbox_info stand-in", 'gearbox_info{backend="badmetrics"} 1']
        body = ("# TYPE gearbox_http_requests_total counter\n" + "\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class CappedServer(ThreadingHTTPServer):
    """Takes a connection only when one of its 8 workers is free (like prefork's workers): the
    rest wait in the listen backlog."""
    slots = threading.BoundedSemaphore(8)

    def get_request(self):
        self.slots.acquire()
        try:
            return super().get_request()
        except OSError:
            self.slots.release()
            raise

    def shutdown_request(self, request):
        super().shutdown_request(request)
        self.slots.release()


def main():
    if "--help" in sys.argv:
        print(HELP)
        return 0
    backend = arg("--backend", "thread")
    mode = arg("--mode", "echo")
    if backend == "broken":
        print("gearbox: backend broken: cannot start", file=sys.stderr)
        return 1
    if backend == "refused":
        print("gearbox: backend refused: io_uring_queue_init: Resource temporarily unavailable",
              file=sys.stderr)
        return 1
    if backend == "lost":
        print('gearbox: backend "lost" is not available here: not permitted', file=sys.stderr)
        return 2
    if backend not in BACKENDS:
        print(f'gearbox: unknown backend "{backend}"', file=sys.stderr)
        return 2
    host, port = arg("--listen", "127.0.0.1:0").rsplit(":", 1)
    Handler.upstream = arg("--upstream") if mode == "proxy" else None
    Handler.backend = backend
    ThreadingHTTPServer.request_queue_size = 1024
    ThreadingHTTPServer.daemon_threads = True
    server = (CappedServer if backend == "capped" else ThreadingHTTPServer)((host, int(port)), Handler)
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
    admin = arg("--admin-listen")
    if admin and backend != "noadmin":
        ahost, aport = admin.rsplit(":", 1)
        admin_server = ThreadingHTTPServer((ahost, int(aport)), Admin)
        threading.Thread(target=admin_server.serve_forever, daemon=True).start()
    print(f"gearbox: listening on {host}:{server.server_address[1]} (backend {backend}, mode {mode})",
          file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())

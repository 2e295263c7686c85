# The load-test matrix as data: which backends and scenarios exist, and what each one means.
# A new backend or scenario is one line here (the runner and the report read nothing else).
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

# Used when `gearbox --help` does not list its backends; display order of the report.
KNOWN_BACKENDS = ("thread", "prefork", "pool", "uring", "fiber")

# The programs set beside gearbox (--peers); every other name is a gearbox backend. The Python
# peers are the seed article's own models (loadtest/peers/python, one shared request handler).
PY_PEERS = ("py-mp", "py-thread", "py-pool", "py-asyncio", "py-uvloop")
PEERS = ("nginx", "haproxy", "go") + PY_PEERS

# How a peer's thread/process/loop count is set (a peer not listed has none: a thread per
# connection, or one event loop).
PEER_WORKERS = {"nginx": "worker_processes", "haproxy": "nbthread", "go": "GOMAXPROCS",
                "py-mp": "--workers",
                "py-pool": "--workers"}

# One line per backend: the model the report's explanations speak of.
BACKEND_MODELS = {
    "thread": "a thread per connection, blocking I/O",
    "prefork": "a process per connection (pre-forked workers), blocking I/O",
    "pool": "an epoll loop handing ready connections to a thread pool",
    "uring": "io_uring with one stackless C++20 coroutine per connection",
    "fiber": "a stackful Boost.Fiber per connection over a netpoller",
    "nginx": "nginx (Debian nginx-light), event-loop workers (one per server CPU)",
    "haproxy": "HAProxy 2.6 (Debian haproxy), one event loop per thread (nbthread = server CPUs)",
    "go": "Go net/http, a goroutine per connection on the Go scheduler (GOMAXPROCS = server CPUs)",
    "py-mp": "Python, pre-forked worker processes (os.fork, as gunicorn's sync workers) blocking "
             "in accept() on one socket, one connection each (2 × CPUs + 1)",
    "py-thread": "Python `threading`: a thread per connection, blocking; the GIL runs one at a time",
    "py-pool": "Python `concurrent.futures.ThreadPoolExecutor` (its default size), a request per "
               "turn, the connection resubmitted when others wait",
    "py-asyncio": "Python `asyncio`: one event loop, a coroutine per connection (start_server, streams)",
    "py-uvloop": "the same asyncio program on uvloop (libuv, Debian python3-uvloop)",
}


# How each peer is written (the report's "Peers" table): its source and its idiom.
PEER_CODE = {
    "nginx": ("generated nginx.conf", "`return 200` for /plaintext; POST /echo by the echo "
              "module (libnginx-mod-http-echo: `echo_read_request_body; echo_request_body;`, the "
              "body buffered whole in memory, answered chunked); in proxy mode every path "
              "proxied over a keep-alive upstream pool"),
    "haproxy": ("generated haproxy.cfg", "`http-request return status 200` for /plaintext; in "
                "proxy mode every path to the upstream with `option http-keep-alive`, "
                "`http-reuse always` and `pool-max-conn` idle server connections; maxconn "
                "raised (2 descriptors per connection), client/server timeouts 60 s"),
    "go": ("loadtest/peers/go/main.go", "net/http's Server and ServeMux; the body read whole "
           "before the echo; /delay time.Sleep (the goroutine parks), /cpu the calibrated loop"),
    "py-mp": ("loadtest/peers/python/mp_peer.py", "os.fork'ed workers blocking in accept() on "
              "one socket; a connection kept alive while no other waits in the listen queue"),
    "py-thread": ("loadtest/peers/python/threading_peer.py", "accept loop starting a "
                  "threading.Thread per connection; time.sleep waits, /cpu holds the GIL"),
    "py-pool": ("loadtest/peers/python/pool_peer.py", "accept loop submitting connections to a "
                "ThreadPoolExecutor; one request per turn, resubmitted when others wait"),
    "py-asyncio": ("loadtest/peers/python/asyncio_peer.py", "asyncio.start_server with "
                   "StreamReader/Writer; asyncio.sleep waits, /cpu runs on the loop"),
    "py-uvloop": ("loadtest/peers/python/uvloop_peer.py", "asyncio_peer.py on uvloop"),
}

PLAINTEXT = "Hello, World!"
# Idle upstream connections kept per server in the proxy scenario, by the nginx peer (`keepalive`),
# the HAProxy peer (`pool-max-conn`) and
# by gearbox (--proxy-keepalive) alike: a pool smaller than the 64 connections in flight makes
# either open and close an upstream connection for many requests (gearbox's default is 32).
PROXY_KEEPALIVE = 256
DONE = "done"        # gearbox's body for /delay/<ms> and /cpu/<ms>
ECHO = "=echo"       # the response body must be the request body, byte for byte


@dataclass(frozen=True)
class Background:
    """A second, concurrent wrk load on the same server (the slow neighbours of a scenario)."""
    path: str
    connections: int
    expect: str = DONE


@dataclass(frozen=True)
class Scenario:
    name: str
    method: str
    path: str
    connections: int
    body: int = 0                      # request body bytes (POST)
    mode: str = "echo"                 # server mode: echo | proxy
    smoke_connections: int = 0         # fewer connections under --smoke; 0 = same
    wrk_threads: int = 0               # 0 = one per client CPU
    min_duration: float = 0            # seconds at least, outside --smoke (connection set-up)
    peers: tuple[str, ...] = ()        # peers that can serve it (when --peers)
    about: str = ""                    # one line for the report header
    server_flags: tuple[str, ...] = field(default=())  # added when `--help` lists the flag
    expect: str = PLAINTEXT            # the body every response must carry; ECHO = the request's
    all_cpus: bool = False             # the server gets every CPU, sharing them with the client
    variants: tuple[int, ...] = ()     # run each target with this many threads/processes/loops
    only_parallel: bool = False        # only targets with a thread/process/loop count
    backends: tuple[str, ...] = ()     # only these gearbox backends (empty: all)
    background: Background | None = None
    kind: str = "wrk"                  # wrk (closed loop) | idle (held connections) | open (rates)
    rates: tuple[int, ...] = ()        # open: offered requests/s, one run each
    group: str = "matrix"              # the report section: matrix | lessons
    in_smoke: bool = True              # --smoke runs it (at its smoke size)
    once: bool = False                 # one run whatever --repeat (memory held; rate steps)
    extra_runs: int = 0                # runs beyond --repeat when it is above 1 (a noisy,
                                       # client-bound scenario gets a steadier median)
    smoke_peers: bool = False          # --smoke runs its peers here (each peer starts somewhere)
    smoke_backends: int = 0            # --smoke runs only the first N gearbox backends (0: all)
    scrape_metrics: bool = False       # gearbox gets --admin-listen on a free port (when --help
                                       # lists it) and /metrics is scraped once a second
    pipeline: int = 1                  # requests wrk sends back to back per send (1: one at a time)

    def runs(self, repeat: int) -> int:
        """How many times it runs under --repeat `repeat`."""
        if self.once:
            return 1
        return repeat + self.extra_runs if repeat > 1 else repeat

    def seconds(self, duration: float, smoke: bool, quick: bool = False) -> float:
        if smoke:
            return duration
        return max(duration, self.min_duration / 2 if quick else self.min_duration)

    def conns(self, smoke: bool) -> int:
        return self.smoke_connections if smoke and self.smoke_connections else self.connections


ALL_PEERS = PEERS
PY = PY_PEERS
GIL_PEERS = ("go", "py-mp", "py-thread", "py-pool", "py-asyncio")
STACK_PEERS = ("nginx", "go", "py-asyncio", "py-uvloop")
PROXIES = ("nginx", "haproxy")  # the peers operators run today in front of their services
OPEN_RATES = (2000, 5000, 10000, 20000, 40000, 60000)

# One line per scenario.
SCENARIOS = (
    Scenario("plaintext", "GET", "/plaintext", 64, peers=PROXIES + ("go",) + PY, smoke_peers=True, about="GET /plaintext, 64 keep-alive connections"),
    Scenario("metrics", "GET", "/plaintext", 64, scrape_metrics=True, smoke_backends=1, about="GET /plaintext, 64 keep-alive connections, as plaintext, with gearbox counting its metrics (--admin-listen) and the runner scraping GET /metrics once a second: what the counters cost"),
    Scenario("echo-4k", "POST", "/echo", 64, body=4096, expect=ECHO, peers=("nginx", "go", "py-thread", "py-asyncio", "py-uvloop"), smoke_peers=True, about="POST of a 4 KiB body echoed back, 64 connections"),
    Scenario("echo-256k", "POST", "/echo", 64, body=262144, expect=ECHO, peers=("nginx", "go"), about="POST of a 256 KiB body echoed back, 64 connections"),
    Scenario("c1k", "GET", "/plaintext", 1000, min_duration=6, peers=PROXIES + ("go",), in_smoke=False, about="GET /plaintext over 1,000 keep-alive connections (one wrk thread): where a thread per connection starts to wait for the scheduler", server_flags=("--max-connections=20000", "--backlog=4096")),
    Scenario("c10k", "GET", "/plaintext", 10000, smoke_connections=500, wrk_threads=4, min_duration=15, peers=PROXIES + ("go", "py-thread", "py-asyncio", "py-uvloop"), about="GET /plaintext over 10,000 keep-alive connections", server_flags=("--max-connections=20000", "--backlog=4096")),
    Scenario("delay", "GET", "/delay/100", 1000, smoke_connections=100, expect=DONE, peers=("go",) + PY, smoke_peers=True, about="GET /delay/100 at 1,000 connections: waiting without working"),
    Scenario("cpu", "GET", "/cpu/2", 16, expect=DONE, peers=("go", "py-mp", "py-thread", "py-asyncio"), smoke_peers=True, about="GET /cpu/2 at 16 connections: 2 ms of computation per request"),
    Scenario("proxy", "GET", "/plaintext", 64, mode="proxy", peers=PROXIES, smoke_peers=True, extra_runs=2, about="GET /plaintext through the proxy to an nginx upstream (`return 200`, one worker, on the client CPU), 64 connections", server_flags=(f"--proxy-keepalive={PROXY_KEEPALIVE}",)),
    Scenario("pipelined", "GET", "/plaintext", 64, pipeline=16, peers=PROXIES + ("go",), about="GET /plaintext pipelined 16 deep (TechEmpower's plaintext test), 64 keep-alive connections: what answering a batch of requests in one write saves"),
    # The lessons' own scenarios.
    Scenario("gil", "GET", "/cpu/2", 16, expect=DONE, all_cpus=True, variants=(1, 2), peers=GIL_PEERS, group="lessons", about="GET /cpu/2 at 16 connections with both CPUs for the server (wrk, light here, shares them), at 1 and 2 threads/processes/loops: who turns two cores into twice the work"),
    Scenario("multi-plaintext", "GET", "/plaintext", 64, all_cpus=True, variants=(1, 2), only_parallel=True, group="lessons", in_smoke=False, about="GET /plaintext, 64 connections, both CPUs (shared with wrk), at 1 and 2 threads/loops"),
    Scenario("multi-mixed", "GET", "/plaintext", 64, all_cpus=True, variants=(1, 2), only_parallel=True, background=Background("/cpu/20", 1), group="lessons", about="GET /plaintext at 64 connections while one more connection asks for /cpu/20 again and again (20 ms of computation each), both CPUs, at 1 and 2 threads/loops: what a slow request does to its neighbours' p99"),
    Scenario("idle-1k", "GET", "/plaintext", 1000, smoke_connections=100, kind="idle", peers=STACK_PEERS + ("py-thread",), group="lessons", once=True, about="1,000 keep-alive connections, one request each, then idle: memory per idle connection held", server_flags=("--max-connections=20000", "--backlog=4096")),
    Scenario("idle-10k", "GET", "/plaintext", 10000, smoke_connections=300, kind="idle", peers=STACK_PEERS, backends=("thread", "pool", "uring", "fiber"), group="lessons", in_smoke=False, once=True, about="10,000 keep-alive connections, one request each, then idle: memory per idle connection held", server_flags=("--max-connections=20000", "--backlog=4096")),
    Scenario("open", "GET", "/plaintext", 64, kind="open", rates=OPEN_RATES, peers=("nginx", "go"), group="lessons", once=True, about="GET /plaintext at a fixed offered rate (open loop, 64 connections; latency from each request's intended send time, so no coordinated omission), stepped from light to past saturation"),
)


def scenario_by_name(name: str) -> Scenario:
    for s in SCENARIOS:
        if s.name == name:
            return s
    raise KeyError(name)


@dataclass
class BinaryInfo:
    backends: list[str]                 # runnable, in display order
    unavailable: dict[str, str]         # listed but not runnable here: name -> why
    flags: set[str]                     # long flags mentioned in --help ("--threads", ...)
    source: str                         # "help" or "fallback"
    models: dict[str, str] = field(default_factory=dict)              # backend -> its help line
    backend_flags: dict[str, list[str]] = field(default_factory=dict)  # backend -> its own flags

    def per_connection(self, backend: str) -> bool:
        """A thread or process per connection: its parallelism is its connections, no flag."""
        return bool(re.search(r"\b(thread|process)e?s? per connection|one connection each",
                              self.models.get(backend, ""), re.I))

    def parallel_flag(self, backend: str) -> str | None:
        """The flag that sets how many threads/processes/loops a backend runs on, from --help:
        --threads or --workers when its description names the backend (`pool/fiber: worker
        threads`, `uring: event loops`); None for a per-connection model (prefork's --workers
        caps its processes, one connection each) or a backend with neither."""
        if self.per_connection(backend):
            return None
        own = self.backend_flags.get(backend, [])
        for flag in ("--threads", "--workers"):
            if flag in own:
                return flag
        return None


_BACKEND_LINE = re.compile(r"^\s+([a-z][a-z0-9_-]*)(?:\s*[:\u2013]\s*|\s+-\s+|\s{2,}|$)(.*)$")
_LIST = re.compile(r"[a-z][a-z0-9_-]*(?:\s*[,|/]\s*[a-z][a-z0-9_-]*)+")
_OPTION = re.compile(r"^\s+(?:-[a-zA-Z], )?(--[a-z][a-z0-9-]*)(?:[ =]\[?[A-Z][A-Z_:]*\]?)?(?:\s{2,}(.*))?$")
_NAMES_PREFIX = re.compile(r"([a-z][a-z0-9_-]*(?:\s*[/,]\s*[a-z][a-z0-9_-]*)*):")


def _option_descriptions(text: str) -> dict[str, str]:
    """--flag -> its description (continuation lines joined) from a cxxopts-style help."""
    out: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        m = _OPTION.match(line)
        if m:
            current = m.group(1)
            out[current] = (m.group(2) or "").strip()
        elif current and line.startswith("      ") and line.strip() and not line.strip().startswith("-"):
            out[current] = (out[current] + " " + line.strip()).strip()
        else:
            current = None
    return out


def parse_help(text: str) -> BinaryInfo:
    """Reads the backends and flags out of `gearbox --help`.

    Understood forms: a section whose heading mentions "backend" (e.g. "Backends:") with
    indented lines "  NAME  description" (a description saying "unavailable" or "not
    available" marks it as not runnable here); or the --backend option's description listing
    the names ("thread, prefork, pool" or "thread|prefork|pool"). Falls back to KNOWN_BACKENDS.
    A flag belongs to the backends its description names before a colon ("pool/fiber: worker
    threads", "prefork: ...; uring: ...").
    """
    flags = set(re.findall(r"(--[a-z][a-z0-9-]*)", text))
    backends: list[str] = []
    unavailable: dict[str, str] = {}
    models: dict[str, str] = {}
    in_section = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        indented = line[0].isspace()
        if stripped.startswith("-"):
            in_section = False
            continue
        if not indented or stripped.endswith(":"):
            in_section = bool(re.search(r"\bbackends?\b", stripped, re.I))
            continue
        if not in_section:
            continue
        m = _BACKEND_LINE.match(line)
        if not m:
            continue
        name, desc = m.group(1), m.group(2).strip()
        if name in backends or name in unavailable:
            continue
        models[name] = desc
        low = desc.lower()
        if "unavailable" in low or "not available" in low:
            unavailable[name] = desc
        else:
            backends.append(name)
    if not backends and not unavailable:
        for line in text.splitlines():
            if "--backend" in line:
                desc = line.split("--backend", 1)[1]
                lists = _LIST.findall(desc)
                if lists:
                    best = max(lists, key=len)
                    backends = [n for n in re.split(r"\s*[,|/]\s*", best) if n]
                    break
    source = "help"
    if not backends and not unavailable:
        backends, source = list(KNOWN_BACKENDS), "fallback"
    known = set(backends) | set(unavailable)
    backend_flags: dict[str, list[str]] = {}
    for flag, desc in _option_descriptions(text).items():
        for group in _NAMES_PREFIX.findall(desc):
            for name in re.split(r"\s*[/,]\s*", group):
                if name in known and flag not in backend_flags.setdefault(name, []):
                    backend_flags[name].append(flag)
    return BinaryInfo(backends, unavailable, flags, source, models, backend_flags)


def probe_binary(binary: str) -> BinaryInfo:
    try:
        out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
        return parse_help(out.stdout + "\n" + out.stderr)
    except (OSError, subprocess.TimeoutExpired):
        return BinaryInfo(list(KNOWN_BACKENDS), {}, set(), "fallback")

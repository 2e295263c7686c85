# The load-test matrix as data: which backends and scenarios exist, and what each one means.
# A new backend or scenario is one line here (the runner and the report read nothing else).
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field

# Used when `gearbox --help` does not list its backends; display order of the report.
KNOWN_BACKENDS = ("thread", "prefork", "pool", "uring", "fiber")

# One line per backend: the model the report's explanations speak of.
BACKEND_MODELS = {
    "thread": "a thread per connection, blocking I/O",
    "prefork": "a process per connection (pre-forked workers), blocking I/O",
    "pool": "an epoll loop handing ready connections to a thread pool",
    "uring": "io_uring with one stackless C++20 coroutine per connection",
    "fiber": "a stackful Boost.Fiber per connection over a netpoller",
    "nginx": "nginx (Debian nginx-light), one event-loop worker",
    "go": "Go net/http, a goroutine per connection on the Go scheduler",
}


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

    def seconds(self, duration: float, smoke: bool) -> float:
        return duration if smoke else max(duration, self.min_duration)

    def conns(self, smoke: bool) -> int:
        return self.smoke_connections if smoke and self.smoke_connections else self.connections


# One line per scenario.
SCENARIOS = (
    Scenario("plaintext", "GET", "/plaintext", 64, peers=("nginx", "go"), about="GET /plaintext, 64 keep-alive connections"),
    Scenario("echo-4k", "POST", "/echo", 64, body=4096, peers=("go",), about="POST of a 4 KiB body echoed back, 64 connections"),
    Scenario("echo-256k", "POST", "/echo", 64, body=262144, peers=("go",), about="POST of a 256 KiB body echoed back, 64 connections"),
    Scenario("c10k", "GET", "/plaintext", 10000, smoke_connections=500, wrk_threads=4, min_duration=15, peers=("nginx", "go"), about="GET /plaintext over 10,000 keep-alive connections", server_flags=("--max-connections=20000", "--backlog=4096")),
    Scenario("delay", "GET", "/delay/100", 1000, smoke_connections=100, peers=(), about="GET /delay/100 at 1,000 connections: waiting without working"),
    Scenario("cpu", "GET", "/cpu/2", 16, peers=(), about="GET /cpu/2 at 16 connections: 2 ms of computation per request"),
    Scenario("proxy", "GET", "/plaintext", 64, mode="proxy", peers=("nginx",), about="GET /plaintext through the proxy to an upstream gearbox (echo, other core), 64 connections"),
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


_BACKEND_LINE = re.compile(r"^\s+([a-z][a-z0-9_-]*)(?:\s*[:\u2013]\s*|\s+-\s+|\s{2,}|$)(.*)$")
_LIST = re.compile(r"[a-z][a-z0-9_-]*(?:\s*[,|/]\s*[a-z][a-z0-9_-]*)+")


def parse_help(text: str) -> BinaryInfo:
    """Reads the backends and flags out of `gearbox --help`.

    Understood forms: a section whose heading mentions "backend" (e.g. "Backends:") with
    indented lines "  NAME  description" (a description saying "unavailable" or "not
    available" marks it as not runnable here); or the --backend option's description listing
    the names ("thread, prefork, pool" or "thread|prefork|pool"). Falls back to KNOWN_BACKENDS.
    """
    flags = set(re.findall(r"(--[a-z][a-z0-9-]*)", text))
    backends: list[str] = []
    unavailable: dict[str, str] = {}
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
    if backends or unavailable:
        return BinaryInfo(backends, unavailable, flags, "help")
    return BinaryInfo(list(KNOWN_BACKENDS), {}, flags, "fallback")


def probe_binary(binary: str) -> BinaryInfo:
    try:
        out = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
        return parse_help(out.stdout + "\n" + out.stderr)
    except (OSError, subprocess.TimeoutExpired):
        return BinaryInfo(list(KNOWN_BACKENDS), {}, set(), "fallback")

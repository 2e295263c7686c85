#!/usr/bin/env python3
# The load-test matrix (`make bench`, `make bench-smoke`): every backend x scenario under wrk,
# with the server on its own CPU, and a report (Markdown tables + matplotlib charts).
"""gearbox load-test matrix.

For every repeat, scenario and backend (interleaved, so drift hits every backend alike) it
starts `gearbox --backend NAME --mode echo|proxy --listen 127.0.0.1:0` pinned to the server
CPUs (taskset), waits until it answers, checks the scenario's answer byte for byte (twice, on
one keep-alive connection), runs wrk (loadtest/wrk/bench.lua, which checks every response's
status and body) pinned to the other CPUs, reads the server's cost from /proc (CPU user/sys,
context switches, peak RSS/PSS, threads and processes, summed over its whole process tree, and
the client connections it really holds), stops it with SIGTERM by PID, and moves on. Results
go to loadtest/results/<timestamp>/: results.json (every run), summary.json (median/min/max),
report.md and charts/*.png.

Backends and their flags come from `gearbox --help` alone: every backend its "Backends:"
section lists runs (one it marks "unavailable here" is skipped, nothing else ever is), and a
backend whose --threads/--workers description names it ("pool/fiber: worker threads") gets
that flag set to the number of server CPUs.

Headline figure: requests per server core = correct answers / server CPU seconds, both over one
window (wrk's lifetime). A run with any wrong or missing answer (socket error, timeout,
non-200, wrong body) is marked "errors" and kept out of the medians. Each run is marked with
its bottleneck: the side (server or client = wrk + upstream) that used >= 85% of its CPUs.

c10k: the runner raises RLIMIT_NOFILE (soft and, as root, hard) to 65536 for itself, which
wrk, gearbox and the peers inherit, and runs wrk with 4 threads for it (c10k's connection set-up
is spread over them) and for at least 15 s (accepting 10,000 connections takes seconds, more
so for a thread or process per connection); gearbox gets --max-connections and --backlog
when its --help lists them. Connections beyond net.core.somaxconn (4096 here) wait for
SYN retries, which shows as latency or timeouts of the slow acceptors.

metrics: plaintext again, gearbox started with --admin-listen 127.0.0.1:<a free port> (when its
--help lists it) and /metrics scraped by the runner once a second for the whole load window;
the run is an error unless every scrape answered 200 with gearbox_http_requests_total, at least
window - 1 s of them happened, and the counters counted every answer wrk got. The report puts
its req/s per server core beside plaintext's, per backend. --smoke runs it on the first
backend only.

proxy: the upstream is nginx answering `return 200` (one worker, on the client CPU); a proxy
run fails unless nginx's stub_status counted at least as many requests as wrk got answers.

The core alone (skipped with --no-core-bench): before the matrix, gearbox_core_bench (beside the
binary; bench/core_bench.cpp, Google Benchmark) runs pinned to the server CPU and the report
gets its ns per request (keep-alive, 16-deep pipelined and proxied GETs, each from a lent span
and handed over) and the heap bytes one idle connection holds in the core. A run whose
micro-benchmark fails (exit status, missing figures) is not ok; one without the binary says so.

Peers (--peers): nginx (Debian nginx-light, a worker per server CPU, config generated in a
temp dir) for plaintext, c1k, c10k and proxy (every path proxied); HAProxy (Debian haproxy,
nbthread = server CPUs, generated config) for the same, skipped with a message when `haproxy`
is not installed or the descriptor limit cannot hold the connections; a Go net/http server
(loadtest/peers/go, GOMAXPROCS = server CPUs) for plaintext, echo, c10k, delay and cpu,
skipped with a message when `go` is not installed (`make bench` installs golang-go).

The reference report (loadtest/REPORT.md + loadtest/charts/*.png) comes from a full run:
    make bench BENCH_ARGS="--peers --publish"
or  python3 loadtest/run.py --build build --peers --publish
A report can be rebuilt from a results directory without rerunning:
    python3 loadtest/run.py --report-from loadtest/results/<timestamp> [--publish]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import corebench, matrix, runner  # noqa: E402

SMOKE_DURATION = 1.0


def ensure_matplotlib() -> None:
    """Re-executes under Debian's /usr/bin/python3 if this interpreter lacks matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        system = "/usr/bin/python3"
        if os.path.exists(system) and os.path.realpath(sys.executable) != os.path.realpath(system) \
                and not os.environ.get("GEARBOX_BENCH_REEXEC"):
            os.environ["GEARBOX_BENCH_REEXEC"] = "1"
            os.execv(system, [system] + sys.argv)


def raise_fd_limit(want: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limits in ((max(want, soft), max(want, hard)), (min(want, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def split_cpus(server_count: int) -> tuple[list[int], list[int]]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return [], []
    server_count = max(1, min(server_count, len(cpus) - 1))
    return cpus[:server_count], cpus[server_count:]


def parse_args(argv: list[str]) -> argparse.Namespace:
    names = ", ".join(s.name for s in matrix.SCENARIOS)
    p = argparse.ArgumentParser(
        prog="loadtest/run.py", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default="build", help="build directory holding gearbox (default: build)")
    p.add_argument("--binary", help="the gearbox binary (default: BUILD/gearbox)")
    p.add_argument("--backends", help="comma-separated subset (default: every backend the binary lists)")
    p.add_argument("--scenarios", help=f"comma-separated subset of: {names}")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of load per run (default 4; --smoke 1, --quick 2)")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs per backend x scenario (default 3; the idle and open-loop "
                        "scenarios run once, proxy 2 more times when above 1: it is "
                        "client-bound, the noisiest)")
    p.add_argument("--quick", action="store_true",
                   help="the quick preset: 2 s per run, once, c10k 8 s, every other open-loop "
                        "rate, the peers (under 10 minutes on 2 cores; the full run is under 45)")
    p.add_argument("--smoke", action="store_true",
                   help=f"{SMOKE_DURATION:.0f} s per run, once, fewer connections for c10k and delay, "
                        "with the peers; exit 1 unless every backend and installed peer answered "
                        "every request right (socket errors, timeouts, non-200, wrong bodies, a "
                        "start failure all fail; only what `gearbox --help` marks unavailable "
                        "and a peer whose tool is not installed are skipped)")
    p.add_argument("--peers", nargs="?", const="all", default=None, metavar="LIST",
                   help=f"also run the peers: all ({', '.join(matrix.PEERS)}) or a comma-separated "
                        "subset; --smoke runs all unless given")
    p.add_argument("--server-cpus", type=int, default=1,
                   help="CPUs for the server under test (the rest go to wrk and upstream; default 1)")
    p.add_argument("--server-arg", action="append", default=[],
                   help="extra argument for every gearbox started (repeatable)")
    p.add_argument("--out", help="results directory (default: loadtest/results/<timestamp>)")
    p.add_argument("--publish", action="store_true",
                   help="also write the report to loadtest/REPORT.md and loadtest/charts/*.png")
    p.add_argument("--no-charts", action="store_true", help="skip the PNG charts")
    p.add_argument("--report-from", metavar="DIR",
                   help="rebuild report.md and charts from DIR/results.json; run nothing")
    p.add_argument("--no-core-bench", action="store_true",
                   help="skip the core micro-benchmark (gearbox_core_bench beside the binary, "
                        "run pinned to the server CPU before the matrix)")
    p.add_argument("--list", action="store_true", help="print the backends and scenarios, and exit")
    args = p.parse_args(argv)
    if not (args.smoke or args.quick) and args.duration is None:
        args.duration = 4.0
    if args.smoke:
        args.duration = args.duration or SMOKE_DURATION
        args.repeat = 1
        args.peers = args.peers or "all"
    elif args.quick:
        args.duration = args.duration or 2.0
        args.repeat = 1
        args.peers = args.peers or "all"
    return args


def write_report(out: Path, data: dict, publish: bool, charts: bool) -> None:
    from benchlib import report
    summary = runner.aggregate(data["runs"])
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    chart_files: list[Path] = []
    if charts:
        from benchlib import charts as charts_mod  # no matplotlib: fail, do not skip
        chart_files = charts_mod.render(data, summary, out / "charts")
    (out / "report.md").write_text(report.render(data, summary, "charts"))
    print(f"run.py: report {out / 'report.md'}")
    if publish:
        dest = HERE / "charts"
        dest.mkdir(exist_ok=True)
        for f in chart_files:
            shutil.copy(f, dest / f.name)
        (HERE / "REPORT.md").write_text(report.render(data, summary, "charts"))
        print(f"run.py: published {HERE / 'REPORT.md'} and {len(chart_files)} charts in {dest}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not args.no_charts:
        ensure_matplotlib()
    if args.report_from:
        out = Path(args.report_from)
        data = json.loads((out / "results.json").read_text())
        write_report(out, data, args.publish, not args.no_charts)
        return 0

    binary = args.binary or str(Path(args.build) / "gearbox")
    if not os.access(binary, os.X_OK):
        print(f"run.py: {binary} is not an executable; build first (make build)", file=sys.stderr)
        return 2
    binary = str(Path(binary).resolve())
    for tool in ("wrk",):
        if shutil.which(tool) is None:
            print(f"run.py: `{tool}` is not installed (make deps)", file=sys.stderr)
            return 2
    info = matrix.probe_binary(binary)
    backends = info.backends
    skipped = dict(info.unavailable)  # the only backends ever skipped: --help says unavailable
    if args.backends:
        backends = []
        for b in (x.strip() for x in args.backends.split(",")):
            if not b or b in skipped:
                continue
            if info.source == "help" and b not in info.backends:
                print(f"run.py: --backends: {b} is not a backend `gearbox --help` lists "
                      f"({', '.join(info.backends)})", file=sys.stderr)
                return 2
            backends.append(b)
    scenarios = list(matrix.SCENARIOS)
    if args.scenarios:
        try:
            scenarios = [matrix.scenario_by_name(s.strip()) for s in args.scenarios.split(",") if s.strip()]
        except KeyError as e:
            print(f"run.py: unknown scenario {e}; known: {', '.join(s.name for s in matrix.SCENARIOS)}",
                  file=sys.stderr)
            return 2
    peers: list[str] = []
    if args.peers:
        peers = list(matrix.PEERS) if args.peers == "all" else \
            [x.strip() for x in args.peers.split(",") if x.strip() and x.strip() != "none"]
        unknown = [x for x in peers if x not in matrix.PEERS]
        if unknown:
            print(f"run.py: --peers: unknown {', '.join(unknown)}; known: {', '.join(matrix.PEERS)}",
                  file=sys.stderr)
            return 2
    server_cpus, client_cpus = split_cpus(args.server_cpus)
    if not server_cpus:
        print("run.py: fewer than 2 CPUs: server and wrk share the CPU (figures are rough)",
              file=sys.stderr)
    elif client_cpus:
        os.sched_setaffinity(0, client_cpus)  # the runner's sampling stays off the server's CPU
    fd_limit = raise_fd_limit()
    biggest = max(s.conns(args.smoke) for s in scenarios)
    if fd_limit < biggest + 100:
        print(f"run.py: the open-file limit is {fd_limit}; {biggest} connections need more "
              "(run as root or raise `ulimit -n`)", file=sys.stderr)
    stamp = time.strftime("%Y%m%d-%H%M%S") + ("-smoke" if args.smoke else "")
    out = Path(args.out) if args.out else HERE / "results" / stamp
    plan = runner.Plan(
        binary=binary, backends=backends, scenarios=scenarios,
        peers=peers, duration=args.duration,
        repeat=args.repeat, smoke=args.smoke, quick=args.quick, server_cpus=server_cpus,
        client_cpus=client_cpus,
        server_args=args.server_arg, info=info, out=out, skipped=skipped)
    if args.list:
        print("backends:", ", ".join(backends), f"(from {info.source})")
        for name, why in skipped.items():
            print(f"  not run: {name}: {why}")
        print("peers:", ", ".join(peers) or "none")
        for s in scenarios:
            print(f"scenario {s.name:<15} {s.about}")
        order, planned = runner.schedule(plan)
        print(f"plan: {len(order)} runs, {sum(planned) / 60:.0f} min of load and set-up "
              f"({args.repeat} × {args.duration:g} s; a --quick run here took 1.2× its plan)")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    print(f"run.py: {len(backends)} backends ({', '.join(backends)}), {len(scenarios)} scenarios, "
          f"{args.repeat} x {args.duration:g} s, server CPUs {server_cpus or 'all'}, "
          f"client CPUs {client_cpus or 'all'}, fd limit {fd_limit}; results in {out}")
    for name, why in skipped.items():
        print(f"run.py: not running backend {name}: {why}")
    t0 = time.monotonic()
    core = None
    if not args.no_core_bench:
        # Smoke: one short repetition, to prove the path; the full run: 5 of at least 0.5 s.
        reps, min_time = (1, 0.01) if args.smoke else (1, 0.2) if args.quick else (5, 0.5)
        core = corebench.run(corebench.binary_next_to(binary), server_cpus, reps, min_time)
        print(f"run.py: core micro-benchmark: {core['status']}"
              + (f": {core['problem']}" if core.get("problem") else ""))
    try:
        records = runner.run_matrix(plan)
    except KeyboardInterrupt:
        print("run.py: interrupted", file=sys.stderr)
        return 130
    data = {
        "host": dict(runner.host_info(plan), fd_limit=fd_limit),
        "binary": binary,
        "smoke": args.smoke,
        "quick": args.quick,
        "duration_s": args.duration,
        "repeat": args.repeat,
        "backends": backends,
        "peers": plan.peers,
        "skipped_backends": skipped,
        "scenarios": [{"name": s.name, "about": s.about, "connections": s.conns(args.smoke),
                       "method": s.method, "path": s.path, "body": s.body, "mode": s.mode,
                       "group": s.group, "kind": s.kind, "seconds": plan.seconds(s)}
                      for s in scenarios],
        "upstream": "nginx return 200, one worker, on the client CPU",
        "backend_flags": {b: runner.gearbox_flags(plan, b, matrix.SCENARIOS[0]) for b in backends},
        "elapsed_s": round(time.monotonic() - t0, 1),
        "core_bench": core,
        "runs": records,
    }
    (out / "results.json").write_text(json.dumps(data, indent=1))
    write_report(out, data, args.publish, charts=not args.no_charts)
    failed = smoke_failures(records, backends) if args.smoke else \
        [f"{r['backend']} {r['scenario']} (run {r['rep'] + 1}): {r['status']}"
         for r in records if r["status"] not in ("ok", "skipped")]
    if core and core["status"] == "failed":
        failed.append(f"core micro-benchmark: {core['problem']}")
    print(f"run.py: {len(records)} runs in {data['elapsed_s']} s, {len(failed)} not ok")
    if args.smoke and failed:
        for f in failed:
            print(f"run.py: FAILED {f}", file=sys.stderr)
        return 1
    return 0


def smoke_failures(records: list[dict], backends: list[str]) -> list[str]:
    """Everything that fails a smoke run: any run not ok (a peer whose tool is not installed is
    "skipped", not a failure), and a backend or the whole run without a single correct run."""
    out = [f"{r['backend']} {r['scenario']}: {r['status']}: {'; '.join(r['problems'])}"
           for r in records if r["status"] not in ("ok", "skipped")]
    for b in backends:
        if not any(r["backend"] == b and r["status"] == "ok" for r in records):
            out.append(f"{b}: no correct run")
    if not any(r["status"] == "ok" for r in records):
        out.append("no correct run at all")
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

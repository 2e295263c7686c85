# The matrix loop: for each repeat, scenario and backend (interleaved), start the server, load
# it with wrk, read what it cost from /proc, stop it, and keep one record per run.
from __future__ import annotations

import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import procstat, scrape, servers, wrk
from .matrix import ECHO, PEER_WORKERS, PEERS, PY_PEERS, BinaryInfo, Scenario

BUSY = 0.85  # a side using this share of its CPUs or more was the bottleneck
FOREIGN = 0.15  # server-CPU use by other processes beyond which a run is flagged
SETUP_S = 1.0  # a run's time beyond its load (start, checks, stop), for the ETA
ADMIN_FLAG = "--admin-listen"  # gearbox counts its metrics only with it (scrape_metrics)


@dataclass
class Plan:
    binary: str
    backends: list[str]
    scenarios: list[Scenario]
    peers: list[str]
    duration: float
    repeat: int
    smoke: bool
    server_cpus: list[int]
    client_cpus: list[int]
    server_args: list[str]
    info: BinaryInfo              # what `gearbox --help` says: backends, their flags
    out: Path
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why
    quick: bool = False

    def seconds(self, sc: Scenario) -> float:
        return sc.seconds(self.duration, self.smoke, self.quick)

    @property
    def flags(self) -> set[str]:
        return self.info.flags


class Upstream:
    """The proxy scenario's upstream: nginx answering `return 200` on the client CPUs, one
    worker, started once; its stub_status counts the requests that really reached it."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.server: servers.Server | None = None
        self.error = ""

    def port(self) -> int:
        if self.server is None and not self.error:
            try:
                self.server = servers.start_nginx("upstream", self.plan.client_cpus[:1],
                                                  self.plan.out / "logs" / "upstream.log")
            except servers.StartError as e:
                self.error = f"the upstream (nginx) did not start: {e}"
        if self.server is None:
            raise servers.StartError(self.error)
        return self.server.port

    def served(self) -> int:
        assert self.server is not None and self.server.status_port
        return servers.nginx_requests(self.server.status_port)

    def stop(self) -> None:
        if self.server is not None:
            servers.stop(self.server)
            self.server = None


@dataclass(frozen=True)
class Target:
    """One thing to run in a scenario: a gearbox backend or a peer (base), at a thread/process/
    loop count (workers; None: the default, one per server CPU where the model has a count)
    and, for an open-loop scenario, an offered rate."""
    label: str
    base: str
    workers: int | None = None
    rate: int | None = None

    @property
    def kind(self) -> str:
        return "peer" if self.base in PEERS else "gearbox"


def has_workers(plan: Plan, base: str) -> bool:
    return base in PEER_WORKERS if base in PEERS else plan.info.parallel_flag(base) is not None


def rate_label(rate: int) -> str:
    return f"{rate // 1000}k" if rate % 1000 == 0 else str(rate)


def targets_for(plan: Plan, sc: Scenario) -> list[Target]:
    """What runs in a scenario. Under --smoke: each scenario marked in_smoke, its peers only
    where smoke_peers (every peer starts at least once), one thread count and one rate."""
    if plan.smoke and not sc.in_smoke:
        return []
    bases = [b for b in plan.backends if not sc.backends or b in sc.backends]
    if plan.smoke and sc.smoke_backends:
        bases = bases[:sc.smoke_backends]
    if sc.smoke_peers or not plan.smoke:
        bases += [p for p in plan.peers if p in sc.peers]
    if sc.only_parallel:
        bases = [b for b in bases if has_workers(plan, b) and b not in PEERS]
    out = []
    for b in bases:
        counts = sc.variants if sc.variants and has_workers(plan, b) else (None,)
        rates = (sc.rates[:1] if plan.smoke else sc.rates[::2] if plan.quick else sc.rates) \
            or (None,)
        if plan.smoke:
            counts = counts[-1:]
        for w in counts:
            for r in rates:
                label = b + (f"×{w}" if w else "") + (f"@{rate_label(r)}" if r else "")
                out.append(Target(label, b, w, r))
    return out


def cpus_for(plan: Plan, sc: Scenario) -> tuple[list[int], list[int]]:
    """(server CPUs, client CPUs): the plan's split, or every CPU for both (all_cpus)."""
    if sc.all_cpus and plan.server_cpus:
        every = sorted(set(plan.server_cpus) | set(plan.client_cpus))
        return every, every
    return plan.server_cpus, plan.client_cpus


def gearbox_flags(plan: Plan, name: str, scenario: Scenario, workers: int | None = None,
                  server_cpus: list[int] | None = None) -> list[str]:
    """The scenario's flags the binary lists, and the backend's own --threads/--workers flag
    (from --help) at `workers`, by default one per server CPU (per-connection models have none)."""
    out = [f for f in scenario.server_flags if f.split("=", 1)[0] in plan.flags]
    flag = plan.info.parallel_flag(name)
    if flag:
        cpus = plan.server_cpus if server_cpus is None else server_cpus
        out.append(f"{flag}={workers or max(1, len(cpus))}")
    return out


def start_target(plan: Plan, t: Target, scenario: Scenario, upstream: Upstream, log: Path,
                 cpus: list[int]) -> servers.Server:
    up = upstream.port() if scenario.mode == "proxy" else None
    if t.base == "nginx":
        return servers.start_nginx(scenario.mode, cpus, log, up, workers=t.workers,
                                   body_echo=scenario.expect == ECHO)
    if t.base == "haproxy":
        return servers.start_haproxy(scenario.mode, cpus, log, up, threads=t.workers,
                                     connections=scenario.conns(plan.smoke))
    if t.base == "go":
        return servers.start_go(cpus, log, plan.out, procs=t.workers)
    if t.base in PY_PEERS:
        return servers.start_python_peer(t.base, cpus, log, workers=t.workers)
    extra = plan.server_args + gearbox_flags(plan, t.base, scenario, t.workers, cpus)
    admin = None
    if scenario.scrape_metrics:
        if ADMIN_FLAG not in plan.flags:
            raise servers.StartError(f"skipped: `gearbox --help` does not list {ADMIN_FLAG}")
        admin = servers.free_port()  # chosen now: each start gets a port nobody holds
        extra.append(f"{ADMIN_FLAG}=127.0.0.1:{admin}")
    server = servers.start_gearbox(plan.binary, t.base, scenario.mode, cpus, log, upstream_port=up,
                                   extra=extra)
    server.admin_port = admin
    return server


def bottleneck(server_share: float, server_cpus: int, client_share: float,
               client_cpus: int) -> str:
    s = server_share >= BUSY * server_cpus
    c = client_share >= BUSY * client_cpus
    if s and c:
        return "both"
    if s:
        return "server"
    if c:
        return "client"
    return "neither"


def one_run(plan: Plan, target: Target | str, scenario: Scenario, rep: int,
            upstream: Upstream) -> dict:
    """One server start, response check, load and stop. Status: ok; errors (the load ran but
    some answers were wrong or missing: marked, kept out of the headline); error (no figures or
    untrustworthy ones); start-failed; skipped (a peer whose tool is not installed)."""
    t = target if isinstance(target, Target) else Target(target, target)
    name = t.label
    conns = scenario.conns(plan.smoke)
    server_cpus, client_cpus = cpus_for(plan, scenario)
    rec: dict = {"backend": name, "base": t.base, "workers": t.workers, "rate": t.rate,
                 "kind": t.kind, "scenario": scenario.name, "load": scenario.kind, "rep": rep,
                 "connections": conns, "status": "ok", "problems": []}
    log = plan.out / "logs" / f"{scenario.name}-{name}-{rep}.log"
    try:
        server = start_target(plan, t, scenario, upstream, log, server_cpus)
    except servers.StartError as e:
        msg = str(e)
        rec["status"] = "skipped" if msg.startswith("skipped") else "start-failed"
        rec["problems"].append(msg)
        return rec
    rec["server_argv"] = server.argv
    wrong = servers.check_responses(server.port, scenario.method, scenario.path, scenario.body,
                                    scenario.expect)
    if not wrong and scenario.background is not None:
        bg = scenario.background
        wrong = servers.check_responses(server.port, "GET", bg.path, 0, bg.expect, tries=1)
    if wrong:
        rec["status"] = "error"
        rec["problems"].append(f"wrong answer before the load, not measured: {wrong}")
        servers.stop(server, timeout=5.0)
        return rec
    sampler = procstat.TreeSampler(server.pid, port=server.port)
    up_sampler = None
    served_before = None
    if scenario.mode == "proxy" and upstream.server is not None:
        up_sampler = procstat.TreeSampler(upstream.server.pid)
        up_sampler.baseline()
        served_before = upstream.served()
    idle = sampler.baseline()
    sampler.start()
    cpu_marks: list[tuple] = []
    scraper = scrape.Scraper(server.admin_port) if server.admin_port else None

    def mark() -> None:
        # The one window: server CPU, upstream CPU and per-CPU busy time, read together right
        # before the load starts and right after it ends; wall time is the span between the two.
        # The scraper (if any) runs from the first mark to the last.
        sampler.mark()
        if up_sampler is not None:
            up_sampler.mark()
        cpu_marks.append((procstat.cpu_times(server_cpus), procstat.cpu_times(client_cpus)))
        if scraper is not None:
            (scraper.start if len(cpu_marks) == 1 else scraper.stop)()

    run_s = plan.seconds(scenario)
    try:
        figures = load(plan, scenario, t, server, sampler, run_s, conns, client_cpus, mark)
    except (wrk.WrkError, LoadError) as e:
        figures = None
        rec["status"] = "skipped" if str(e).startswith("skipped") else "error"
        rec["problems"].append(str(e))
    sampler.stop()
    counted = None
    if scraper is not None:
        scraper.stop()
        # After the load, once more: the counters must have counted every answer the client got.
        counted = scrape.scrape_once(server.admin_port)
    served = upstream.served() - served_before if served_before is not None else None
    alive = server.alive()
    code, problem = servers.stop(server, timeout=5.0 if plan.smoke else 15.0)
    if not alive:
        rec["status"] = "error"
        rec["problems"].append(f"server died during the run (status {code}): "
                               f"{servers.log_tail(log, 3)}")
    elif code not in (0, None):
        rec["problems"].append(f"server exited with status {code} after "
                               f"{signal.Signals(server.stop_signal).name}")
        rec["status"] = "error"
    if problem:
        rec["problems"].append(problem)
        rec["status"] = "error"
    cost = sampler.totals()
    cost["idle_rss_bytes"] = idle.rss
    rec["server"] = cost
    if figures is None:
        if scraper is not None:
            rec["metrics_scrapes"] = len(scraper.scrapes)
        return rec
    rec["wrk"] = figures
    derive(plan, rec, figures, cost, cpu_marks,
           up_sampler.totals() if up_sampler is not None else None, server_cpus, client_cpus)
    if scraper is not None:
        check_scrapes(rec, scraper.scrapes, counted, figures.get("correct", 0))
    if served is not None:
        rec["upstream_served"] = served
        if served < figures["requests"]:
            rec["status"] = "error"
            rec["problems"].append(
                f"the upstream served {served:,} requests but the client counted "
                f"{figures['requests']:,} answers: the proxy answered without its upstream")
        elif served > figures["requests"] + conns + 16:
            rec["status"] = "error"
            rec["problems"].append(
                f"the upstream served {served:,} requests for {figures['requests']:,} answers "
                f"counted ({conns} connections): requests sent upstream more than once")
    return rec


def check_scrapes(rec: dict, scrapes: list[dict], after: dict, answered: int) -> None:
    """The metrics scenario's own check: every scrape of the window answered 200 with
    gearbox_http_requests_total, one a second, and the scrape after the load counted at least
    the answers the client got. Otherwise the run is an error (kept out of the headline)."""
    rec["metrics_scrapes"] = len(scrapes)
    rec["metrics_scrape_s"] = max((s["s"] for s in scrapes), default=None)
    why = scrape.problems(scrapes, rec["derived"]["window_s"])
    if not after["ok"]:
        why.append(f"/metrics after the load: {after['problem']}")
    else:
        rec["metrics_requests_total"] = after["requests"]
        if after["requests"] < answered:
            why.append(f"/metrics counted {after['requests']:,.0f} responses in "
                       f"{scrape.NAME} but the client got {answered:,} answers")
    if why:
        rec["problems"] += why
        rec["status"] = "error"


class LoadError(Exception):
    """A load generator other than wrk failed."""


def load(plan: Plan, sc: Scenario, t: Target, server: servers.Server,
         sampler: procstat.TreeSampler, run_s: float, conns: int, client_cpus: list[int],
         mark) -> dict:
    """Runs the scenario's load against the server; returns wrk-style figures."""
    if sc.kind == "idle":
        from . import idle_load
        try:
            return idle_load.hold(server.port, sc.path, conns, sc.expect, sampler, mark,
                                  settle_s=0.5 if plan.smoke else 1.0)
        except OSError as e:
            raise LoadError(f"idle connections: {e}") from None
    if sc.kind == "open":
        from . import openloop
        try:
            return openloop.run(plan.out, server.port, sc.path, sc.expect, t.rate or 1000, conns,
                                run_s, client_cpus, mark)
        except openloop.OpenLoopError as e:
            raise LoadError(str(e)) from None
    threads = sc.wrk_threads or len(client_cpus)
    argv = wrk.command(server.url(sc.path), sc.method, sc.body, sc.expect, conns, threads, run_s,
                       client_cpus, pipeline=sc.pipeline)
    background = None
    if sc.background is not None:
        bg = sc.background
        background = wrk.command(server.url(bg.path), "GET", 0, bg.expect, bg.connections, 1,
                                 run_s, client_cpus)
    return wrk.run(argv, run_s, grace=10.0 if plan.smoke else 30.0, mark=mark,
                   background=background)


def derive(plan: Plan, rec: dict, figures: dict, cost: dict, cpu_marks: list[tuple],
           up_cost: dict | None, server_cpus: list[int] | None = None,
           client_cpus: list[int] | None = None) -> None:
    """The run's figures, all over the one window [first mark, last mark]: requests/s counts
    correct answers only; memory per connection is divided by the connections held."""
    wall = cost["wall_s"] or figures["wall_s"] or 1e-9
    cpu = cost["cpu_s"]
    server_share = cpu / wall
    client_cpu = figures["cpu_s"]
    if up_cost is not None:
        client_cpu += up_cost["cpu_s"]
        rec["upstream_cpu_s"] = up_cost["cpu_s"]
    client_share = client_cpu / wall
    correct = figures.get("correct", 0)
    server_cpus = plan.server_cpus if server_cpus is None else server_cpus
    client_cpus = plan.client_cpus if client_cpus is None else client_cpus
    server_busy = client_busy = None
    if server_cpus and len(cpu_marks) >= 2 and not set(server_cpus) & set(client_cpus):
        (s0, c0), (s1, c1) = cpu_marks[0], cpu_marks[-1]
        server_busy = procstat.busy_share(s0, s1, len(server_cpus))
        client_busy = procstat.busy_share(c0, c1, len(client_cpus))
    # Whatever else ran on the server's CPUs (other people's builds) disturbs the figures.
    foreign = max(0.0, server_busy - server_share) if server_busy is not None else 0.0
    held = cost.get("peak_held_connections") or 0
    bad = wrk.incorrect(figures)
    if figures.get("background"):
        for k, v in wrk.incorrect(figures["background"]).items():
            bad[f"{k} (background)"] = v
    rec["derived"] = {
        "rps": round(correct / wall, 1),
        "window_s": round(wall, 3),
        "server_cores": round(server_share, 3),
        "client_cores": round(client_share, 3),
        "rps_per_core": round(correct / cpu, 1) if server_share > 0.01 else None,
        "errors": sum(bad.values()),
        "held_connections": held,
        "rss_per_conn_bytes": (round(max(0, cost["peak_rss_bytes"] - cost["idle_rss_bytes"])
                                     / held, 1) if held else None),
        "pss_per_conn_bytes": (round(max(0, cost["peak_pss_bytes"] - cost["idle_pss_bytes"])
                                     / held, 1) if held else None),
        "server_cpu_busy": round(server_busy, 3) if server_busy is not None else None,
        "client_cpu_busy": round(client_busy, 3) if client_busy is not None else None,
        "foreign_server_load": round(foreign, 3),
        "bottleneck": bottleneck(server_busy if server_busy is not None else server_share,
                                 max(1, len(server_cpus)),
                                 client_busy if client_busy is not None else client_share,
                                 max(1, len(client_cpus))),
    }
    if foreign > FOREIGN and rec.get("load") != "idle":  # idle: no CPU figure to disturb
        rec["problems"].append(f"other processes used {foreign:.2f} of the server's CPU during "
                               "the run: figures disturbed")
    if bad:
        rec["problems"].append("wrong or missing answers: " + ", ".join(
            f"{k} {v:,}" for k, v in bad.items()))
        if rec["status"] == "ok":
            rec["status"] = "errors"
    if correct == 0:
        rec["problems"].append("no correct answer")
        rec["status"] = "error"


def progress(i: int, total: int, rec: dict, runs: int, eta_s: float | None = None) -> str:
    eta = f" ETA {eta_s / 60:.0f} min" if eta_s is not None and eta_s >= 60 else \
        f" ETA {eta_s:.0f} s" if eta_s is not None else ""
    head = (f"[{i:>3}/{total}{eta}] {rec['backend']:<8} {rec['scenario']:<10} "
            f"run {rec['rep'] + 1}/{runs}: ")
    d = rec.get("derived")
    if rec["status"] in ("start-failed", "skipped", "unavailable"):
        return head + f"{rec['status'].upper()}: {rec['problems'][0]}"
    if d is None:
        return head + "ERROR: " + "; ".join(rec["problems"])
    if rec.get("load") == "idle":
        per = d.get("pss_per_conn_bytes")
        line = (f"{d['held_connections']:,} connections held idle, PSS "
                f"{rec['server']['peak_pss_bytes'] / 2**20:.1f} MiB, "
                f"{per / 1024:.1f} KiB per connection" if per is not None else "no connection held")
        if rec["status"] != "ok":
            line += "  " + rec["status"].upper() + ": " + "; ".join(rec["problems"])
        return head + line
    per_core = f"{d['rps_per_core']:>10,.0f}" if d["rps_per_core"] else "         -"
    p99 = rec["wrk"]["latency_us"]["99"] / 1000
    line = (f"{d['rps']:>10,.0f} req/s {per_core} /server core  "
            f"(server {d['server_cores']:.2f} cores, bottleneck {d['bottleneck']})  "
            f"p99 {p99:.1f} ms  rss {rec['server']['peak_rss_bytes'] / 2**20:.1f} MiB  "
            f"held {d['held_connections']:,}")
    if "metrics_scrapes" in rec:
        line += f"  scrapes {rec['metrics_scrapes']}"
    if d.get("foreign_server_load", 0) > FOREIGN:
        line += f"  (disturbed: other processes took {d['foreign_server_load']:.2f} of the server CPU)"
    if rec["status"] != "ok":
        line += "  " + rec["status"].upper() + ": " + "; ".join(rec["problems"])
    return head + line


def schedule(plan: Plan) -> tuple[list[tuple[int, Scenario, Target]], list[float]]:
    """Every run in order (repeat, scenario, target), and each one's planned seconds."""
    order = []
    for rep in range(max((sc.runs(plan.repeat) for sc in plan.scenarios), default=0)):
        for sc in plan.scenarios:
            if rep >= sc.runs(plan.repeat):
                continue
            for t in targets_for(plan, sc):
                order.append((rep, sc, t))
    return order, [plan.seconds(sc) + SETUP_S for _, sc, _ in order]


def run_matrix(plan: Plan, say=print) -> list[dict]:
    """Runs every (repeat, scenario, backend-or-peer) in that order; returns one record each.
    Prints a progress line per run with an ETA (planned seconds, scaled by the pace so far)."""
    (plan.out / "logs").mkdir(parents=True, exist_ok=True)
    order, planned = schedule(plan)
    upstream = Upstream(plan)
    records: list[dict] = []
    skip_peer: dict[str, str] = {}
    t0 = time.monotonic()
    try:
        for i, (rep, sc, t) in enumerate(order, 1):
            if t.base in skip_peer:
                rec = {"backend": t.label, "base": t.base, "workers": t.workers, "rate": t.rate,
                       "kind": "peer", "scenario": sc.name, "rep": rep,
                       "connections": sc.conns(plan.smoke), "status": "skipped",
                       "problems": [skip_peer[t.base]]}
            else:
                rec = one_run(plan, t, sc, rep, upstream)
                # A peer whose tool is missing is skipped everywhere; a skip for one scenario's
                # sake (haproxy's descriptors at c10k) skips only that scenario.
                if rec["status"] == "skipped" and t.kind == "peer" and peer_missing(rec):
                    skip_peer[t.base] = rec["problems"][0]
            records.append(rec)
            pace = (time.monotonic() - t0) / max(1e-9, sum(planned[:i]))
            say(progress(i, len(order), rec, sc.runs(plan.repeat), sum(planned[i:]) * pace))
            sys.stdout.flush()
    finally:
        upstream.stop()
    return records


def peer_missing(rec: dict) -> bool:
    """The skip says the peer's program is not installed (not that one scenario cannot run)."""
    return any("not installed" in p for p in rec.get("problems", []))


def _stat(values: list) -> dict | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def figures_of(runs: list[dict]) -> dict:
    """median/min/max of every figure over the given runs (all with "derived")."""
    d = lambda k: [r["derived"].get(k) for r in runs]  # noqa: E731
    s = lambda k: [r["server"].get(k) for r in runs]  # noqa: E731
    return {
        "rps": _stat(d("rps")),
        "requests": _stat([r["wrk"].get("correct", r["wrk"]["requests"]) for r in runs]),
        "rps_per_core": _stat(d("rps_per_core")),
        "server_cores": _stat(d("server_cores")),
        "client_cores": _stat(d("client_cores")),
        "errors": _stat(d("errors")),
        "held_connections": _stat(d("held_connections")),
        "rss_per_conn_bytes": _stat(d("rss_per_conn_bytes")),
        "pss_per_conn_bytes": _stat(d("pss_per_conn_bytes")),
        "peak_pss_bytes": _stat(s("peak_pss_bytes")),
        "peak_rss_bytes": _stat(s("peak_rss_bytes")),
        "idle_rss_bytes": _stat(s("idle_rss_bytes")),
        "cpu_s": _stat(s("cpu_s")),
        "cpu_user_s": _stat(s("cpu_user_s")),
        "cpu_sys_s": _stat(s("cpu_sys_s")),
        "ctxt_voluntary": _stat(s("ctxt_voluntary")),
        "ctxt_involuntary": _stat(s("ctxt_involuntary")),
        "peak_threads": _stat(s("peak_threads")),
        "peak_processes": _stat(s("peak_processes")),
        "metrics_scrapes": _stat([r.get("metrics_scrapes") for r in runs]),
        "latency_us": {q: _stat([r["wrk"]["latency_us"][q] for r in runs])
                       for q in ("50", "90", "99", "99.9")},
        "bottleneck": statistics.mode([r["derived"]["bottleneck"] for r in runs]),
    }


def aggregate(records: list[dict]) -> dict:
    """(scenario, backend) -> median/min/max of the figures over its correct runs ("ok": every
    answer right). A backend none of whose runs was correct, but some ran with wrong or missing
    answers ("errors"), gets those runs' figures with marked=True: shown, never a headline."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["scenario"], r["backend"]), []).append(r)
    out: dict = {}
    for (sc, be), runs in groups.items():
        good = [r for r in runs if r.get("derived") and r["status"] == "ok"]
        marked = [r for r in runs if r.get("derived") and r["status"] == "errors"]
        first = runs[0]
        entry: dict = {"scenario": sc, "backend": be, "kind": first["kind"],
                       "base": first.get("base", be), "workers": first.get("workers"),
                       "rate": first.get("rate"),
                       "runs": len(runs), "good_runs": len(good), "marked_runs": len(marked),
                       "marked": not good and bool(marked),
                       "statuses": sorted({r["status"] for r in runs}),
                       "problems": sorted({p for r in runs for p in r["problems"]}),
                       "connections": runs[0]["connections"]}
        if good or marked:
            entry.update(figures_of(good or marked))
        out[f"{sc}/{be}"] = entry
    return out


def host_info(plan: Plan) -> dict:
    info = {"cpus": os.cpu_count(), "server_cpus": plan.server_cpus,
            "client_cpus": plan.client_cpus, "kernel": os.uname().release,
            "time": time.strftime("%Y-%m-%d %H:%M:%S %z")}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info

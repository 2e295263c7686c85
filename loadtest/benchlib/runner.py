# The matrix loop: for each repeat, scenario and backend (interleaved), start the server, load
# it with wrk, read what it cost from /proc, stop it, and keep one record per run.
from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import procstat, servers, wrk
from .matrix import PEERS, BinaryInfo, Scenario

BUSY = 0.85  # a side using this share of its CPUs or more was the bottleneck
FOREIGN = 0.15  # server-CPU use by other processes beyond which a run is flagged
SETUP_S = 2.0  # a run's time beyond its load (start, checks, stop), for the ETA


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


def gearbox_flags(plan: Plan, name: str, scenario: Scenario) -> list[str]:
    """The scenario's flags the binary lists, and one thread/loop per server CPU for a backend
    with a --threads/--workers flag of its own (per-connection models have none)."""
    out = [f for f in scenario.server_flags if f.split("=", 1)[0] in plan.flags]
    flag = plan.info.parallel_flag(name)
    if flag:
        out.append(f"{flag}={max(1, len(plan.server_cpus))}")
    return out


def start_target(plan: Plan, name: str, scenario: Scenario, upstream: Upstream,
                 log: Path) -> servers.Server:
    up = upstream.port() if scenario.mode == "proxy" else None
    if name == "nginx":
        return servers.start_nginx(scenario.mode, plan.server_cpus, log, up)
    if name == "go":
        return servers.start_go(plan.server_cpus, log, plan.out)
    return servers.start_gearbox(plan.binary, name, scenario.mode, plan.server_cpus, log,
                                 upstream_port=up,
                                 extra=plan.server_args + gearbox_flags(plan, name, scenario))


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


def one_run(plan: Plan, name: str, scenario: Scenario, rep: int, upstream: Upstream) -> dict:
    """One server start, response check, wrk load and stop. Status: ok; errors (the load ran but
    some answers were wrong or missing: marked, kept out of the headline); error (no figures or
    untrustworthy ones); start-failed; skipped (a peer whose tool is not installed)."""
    kind = "peer" if name in PEERS else "gearbox"
    conns = scenario.conns(plan.smoke)
    rec: dict = {"backend": name, "kind": kind, "scenario": scenario.name, "rep": rep,
                 "connections": conns, "status": "ok", "problems": []}
    log = plan.out / "logs" / f"{scenario.name}-{name}-{rep}.log"
    try:
        server = start_target(plan, name, scenario, upstream, log)
    except servers.StartError as e:
        msg = str(e)
        rec["status"] = "skipped" if msg.startswith("skipped") else "start-failed"
        rec["problems"].append(msg)
        return rec
    rec["server_argv"] = server.argv
    wrong = servers.check_responses(server.port, scenario.method, scenario.path, scenario.body,
                                    scenario.expect)
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

    def mark() -> None:
        # The one window: server CPU, upstream CPU and per-CPU busy time, read together right
        # before wrk starts and right after it exits; wall time is the span between the two.
        sampler.mark()
        if up_sampler is not None:
            up_sampler.mark()
        cpu_marks.append((procstat.cpu_times(plan.server_cpus),
                          procstat.cpu_times(plan.client_cpus)))

    threads = scenario.wrk_threads or len(plan.client_cpus)
    run_s = scenario.seconds(plan.duration, plan.smoke)
    argv = wrk.command(server.url(scenario.path), scenario.method, scenario.body, scenario.expect,
                       conns, threads, run_s, plan.client_cpus)
    try:
        figures = wrk.run(argv, run_s, grace=10.0 if plan.smoke else 30.0, mark=mark)
    except wrk.WrkError as e:
        figures = None
        rec["status"] = "error"
        rec["problems"].append(str(e))
    sampler.stop()
    served = upstream.served() - served_before if served_before is not None else None
    alive = server.alive()
    code, problem = servers.stop(server, timeout=5.0 if plan.smoke else 15.0)
    if not alive:
        rec["status"] = "error"
        rec["problems"].append(f"server died during the run (status {code}): "
                               f"{servers.log_tail(log, 3)}")
    elif code not in (0, None):
        rec["problems"].append(f"server exited with status {code} after SIGTERM")
        rec["status"] = "error"
    if problem:
        rec["problems"].append(problem)
        rec["status"] = "error"
    cost = sampler.totals()
    cost["idle_rss_bytes"] = idle.rss
    rec["server"] = cost
    if figures is None:
        return rec
    rec["wrk"] = figures
    derive(plan, rec, figures, cost, cpu_marks,
           up_sampler.totals() if up_sampler is not None else None)
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


def derive(plan: Plan, rec: dict, figures: dict, cost: dict, cpu_marks: list[tuple],
           up_cost: dict | None) -> None:
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
    server_busy = client_busy = None
    if plan.server_cpus and len(cpu_marks) >= 2:
        (s0, c0), (s1, c1) = cpu_marks[0], cpu_marks[-1]
        server_busy = procstat.busy_share(s0, s1, len(plan.server_cpus))
        client_busy = procstat.busy_share(c0, c1, len(plan.client_cpus))
    # Whatever else ran on the server's CPUs (other people's builds) disturbs the figures.
    foreign = max(0.0, server_busy - server_share) if server_busy is not None else 0.0
    held = cost.get("peak_held_connections") or 0
    bad = wrk.incorrect(figures)
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
                                 max(1, len(plan.server_cpus)),
                                 client_busy if client_busy is not None else client_share,
                                 max(1, len(plan.client_cpus))),
    }
    if foreign > FOREIGN:
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


def progress(i: int, total: int, rec: dict, repeat: int, eta_s: float | None = None) -> str:
    eta = f" ETA {eta_s / 60:.0f} min" if eta_s is not None and eta_s >= 60 else \
        f" ETA {eta_s:.0f} s" if eta_s is not None else ""
    head = (f"[{i:>3}/{total}{eta}] {rec['backend']:<8} {rec['scenario']:<10} "
            f"run {rec['rep'] + 1}/{repeat}: ")
    d = rec.get("derived")
    if rec["status"] in ("start-failed", "skipped", "unavailable"):
        return head + f"{rec['status'].upper()}: {rec['problems'][0]}"
    if d is None:
        return head + "ERROR: " + "; ".join(rec["problems"])
    per_core = f"{d['rps_per_core']:>10,.0f}" if d["rps_per_core"] else "         -"
    p99 = rec["wrk"]["latency_us"]["99"] / 1000
    line = (f"{d['rps']:>10,.0f} req/s {per_core} /server core  "
            f"(server {d['server_cores']:.2f} cores, bottleneck {d['bottleneck']})  "
            f"p99 {p99:.1f} ms  rss {rec['server']['peak_rss_bytes'] / 2**20:.1f} MiB  "
            f"held {d['held_connections']:,}")
    if d.get("foreign_server_load", 0) > FOREIGN:
        line += f"  (disturbed: other processes took {d['foreign_server_load']:.2f} of the server CPU)"
    if rec["status"] != "ok":
        line += "  " + rec["status"].upper() + ": " + "; ".join(rec["problems"])
    return head + line


def run_matrix(plan: Plan, say=print) -> list[dict]:
    """Runs every (repeat, scenario, backend-or-peer) in that order; returns one record each.
    Prints a progress line per run with an ETA (planned seconds, scaled by the pace so far)."""
    (plan.out / "logs").mkdir(parents=True, exist_ok=True)
    order = []
    for rep in range(plan.repeat):
        for sc in plan.scenarios:
            for name in plan.backends + [p for p in plan.peers if p in sc.peers]:
                order.append((rep, sc, name))
    planned = [sc.seconds(plan.duration, plan.smoke) + SETUP_S for _, sc, _ in order]
    upstream = Upstream(plan)
    records: list[dict] = []
    skip_peer: dict[str, str] = {}
    t0 = time.monotonic()
    try:
        for i, (rep, sc, name) in enumerate(order, 1):
            if name in skip_peer:
                rec = {"backend": name, "kind": "peer", "scenario": sc.name, "rep": rep,
                       "connections": sc.conns(plan.smoke), "status": "skipped",
                       "problems": [skip_peer[name]]}
            else:
                rec = one_run(plan, name, sc, rep, upstream)
                if rec["status"] == "skipped" and name in PEERS:
                    skip_peer[name] = rec["problems"][0]
            records.append(rec)
            pace = (time.monotonic() - t0) / max(1e-9, sum(planned[:i]))
            say(progress(i, len(order), rec, plan.repeat, sum(planned[i:]) * pace))
            sys.stdout.flush()
    finally:
        upstream.stop()
    return records


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
        entry: dict = {"scenario": sc, "backend": be, "kind": runs[0]["kind"],
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

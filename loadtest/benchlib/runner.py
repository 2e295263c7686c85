# The matrix loop: for each repeat, scenario and backend (interleaved), start the server, load
# it with wrk, read what it cost from /proc, stop it, and keep one record per run.
from __future__ import annotations

import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import procstat, servers, wrk
from .matrix import Scenario

PEERS = ("nginx", "go")
BUSY = 0.85
FOREIGN = 0.15  # server-CPU use by other processes beyond which a run is flagged
# A start failure saying this means "not built or not permitted here", not a broken backend.
UNAVAILABLE = re.compile(r"unknown backend|unavailable|not available|not supported|not permitted", re.I)  # a side using this share of its CPUs or more was the bottleneck


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
    upstream_backend: str
    server_args: list[str]
    flags: set[str]               # long flags the binary's --help mentions
    out: Path
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why


class Upstream:
    """The echo gearbox behind the proxy scenario, started once, on the client CPUs."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.server: servers.Server | None = None
        self.error = ""

    def port(self) -> int:
        if self.server is None and not self.error:
            try:
                self.server = servers.start_gearbox(
                    self.plan.binary, self.plan.upstream_backend, "echo", self.plan.client_cpus,
                    self.plan.out / "logs" / "upstream.log", extra=self.plan.server_args)
            except servers.StartError as e:
                self.error = f"upstream gearbox ({self.plan.upstream_backend}) did not start: {e}"
        if self.server is None:
            raise servers.StartError(self.error)
        return self.server.port

    def stop(self) -> None:
        if self.server is not None:
            servers.stop(self.server)
            self.server = None


def scenario_flags(plan: Plan, scenario: Scenario) -> list[str]:
    return [f for f in scenario.server_flags if f.split("=", 1)[0] in plan.flags]


def start_target(plan: Plan, name: str, scenario: Scenario, upstream: Upstream,
                 log: Path) -> servers.Server:
    up = upstream.port() if scenario.mode == "proxy" else None
    if name == "nginx":
        return servers.start_nginx(scenario.mode, plan.server_cpus, log, up)
    if name == "go":
        return servers.start_go(plan.server_cpus, log, plan.out)
    return servers.start_gearbox(plan.binary, name, scenario.mode, plan.server_cpus, log,
                                 upstream_port=up,
                                 extra=plan.server_args + scenario_flags(plan, scenario))


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
    kind = "peer" if name in PEERS else "gearbox"
    conns = scenario.conns(plan.smoke)
    rec: dict = {"backend": name, "kind": kind, "scenario": scenario.name, "rep": rep,
                 "connections": conns, "status": "ok", "problems": []}
    log = plan.out / "logs" / f"{scenario.name}-{name}-{rep}.log"
    try:
        server = start_target(plan, name, scenario, upstream, log)
    except servers.StartError as e:
        msg = str(e)
        if msg.startswith("skipped"):
            rec["status"] = "skipped"
        elif UNAVAILABLE.search(msg):
            rec["status"] = "unavailable"
        else:
            rec["status"] = "start-failed"
        rec["problems"].append(str(e))
        return rec
    rec["server_argv"] = server.argv
    sampler = procstat.TreeSampler(server.pid)
    up_sampler = None
    if scenario.mode == "proxy" and upstream.server is not None:
        up_sampler = procstat.TreeSampler(upstream.server.pid)
        up_sampler.baseline()
    idle = sampler.baseline()
    sampler.start()
    cpus_before = (procstat.cpu_times(plan.server_cpus), procstat.cpu_times(plan.client_cpus))
    threads = scenario.wrk_threads or len(plan.client_cpus)
    run_s = scenario.seconds(plan.duration, plan.smoke)
    argv = wrk.command(server.url(scenario.path), scenario.method, scenario.body, conns, threads,
                       run_s, plan.client_cpus)
    try:
        figures = wrk.run(argv, run_s, grace=10.0 if plan.smoke else 30.0)
    except wrk.WrkError as e:
        figures = None
        rec["status"] = "error"
        rec["problems"].append(str(e))
    cpus_after = (procstat.cpu_times(plan.server_cpus), procstat.cpu_times(plan.client_cpus))
    sampler.stop()
    if up_sampler is not None:
        up_sampler.final_pids = set(up_sampler.sample(tasks=False).cpu)
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
    wall = figures["wall_s"] or 1e-9
    seconds = figures["duration_us"] / 1e6 or 1e-9
    e = figures["errors"]
    errors = e["connect"] + e["read"] + e["write"] + e["timeout"] + e["status"]
    cpu = cost["cpu_s"]
    server_share = cpu / wall
    client_cpu = figures["cpu_s"]
    if up_sampler is not None:
        t = up_sampler.totals()
        client_cpu += t["cpu_s"]
        rec["upstream_cpu_s"] = t["cpu_s"]
    client_share = client_cpu / wall
    rps = figures["requests"] / seconds
    server_busy = client_busy = None
    if plan.server_cpus:
        server_busy = procstat.busy_share(cpus_before[0], cpus_after[0], len(plan.server_cpus))
        client_busy = procstat.busy_share(cpus_before[1], cpus_after[1], len(plan.client_cpus))
    # Whatever else ran on the server's CPUs (other people's builds) disturbs the figures.
    foreign = max(0.0, server_busy - server_share) if server_busy is not None else 0.0
    rec["derived"] = {
        "rps": round(rps, 1),
        "server_cores": round(server_share, 3),
        "client_cores": round(client_share, 3),
        "rps_per_core": round(rps / server_share, 1) if server_share > 0.01 else None,
        "errors": errors,
        "rss_per_conn_bytes": round(max(0, cost["peak_rss_bytes"] - idle.rss) / conns, 1),
        "pss_per_conn_bytes": round(max(0, cost["peak_pss_bytes"] - cost["idle_pss_bytes"])
                                    / conns, 1),
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
    if errors:
        rec["problems"].append(
            "wrk errors: " + ", ".join(f"{k} {v}" for k, v in e.items() if v))
        if plan.smoke:
            rec["status"] = "error"
    if figures["requests"] == 0:
        rec["problems"].append("no request completed")
        rec["status"] = "error"
    return rec


def progress(i: int, total: int, rec: dict, repeat: int) -> str:
    head = (f"[{i:>3}/{total}] {rec['backend']:<8} {rec['scenario']:<10} "
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
            f"p99 {p99:.1f} ms  rss {rec['server']['peak_rss_bytes'] / 2**20:.1f} MiB")
    if d.get("foreign_server_load", 0) > FOREIGN:
        line += f"  (disturbed: other processes took {d['foreign_server_load']:.2f} of the server CPU)"
    if d["errors"]:
        line += f"  ERRORS {d['errors']}"
    if rec["status"] != "ok":
        line += "  " + rec["status"].upper() + ": " + "; ".join(rec["problems"])
    return head + line


def run_matrix(plan: Plan, say=print) -> list[dict]:
    """Runs every (repeat, scenario, backend-or-peer) in that order; returns one record each."""
    (plan.out / "logs").mkdir(parents=True, exist_ok=True)
    order = []
    for rep in range(plan.repeat):
        for sc in plan.scenarios:
            for name in plan.backends + [p for p in plan.peers if p in sc.peers]:
                order.append((rep, sc, name))
    upstream = Upstream(plan)
    records: list[dict] = []
    skip_peer: dict[str, str] = {}
    try:
        for i, (rep, sc, name) in enumerate(order, 1):
            if name in skip_peer:
                rec = {"backend": name, "kind": "peer" if name in PEERS else "gearbox",
                       "scenario": sc.name, "rep": rep,
                       "connections": sc.conns(plan.smoke), "status": "skipped",
                       "problems": [skip_peer[name]]}
            else:
                rec = one_run(plan, name, sc, rep, upstream)
                if rec["status"] in ("skipped", "unavailable"):
                    skip_peer[name] = rec["problems"][0]
            records.append(rec)
            say(progress(i, len(order), rec, plan.repeat))
            sys.stdout.flush()
    finally:
        upstream.stop()
    return records


def aggregate(records: list[dict]) -> dict:
    """(scenario, backend) -> median/min/max of the figures over its successful runs."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((r["scenario"], r["backend"]), []).append(r)
    out: dict = {}
    for (sc, be), runs in groups.items():
        good = [r for r in runs if r.get("derived") and r["status"] == "ok"]
        entry: dict = {"scenario": sc, "backend": be, "kind": runs[0]["kind"],
                       "runs": len(runs), "good_runs": len(good),
                       "statuses": sorted({r["status"] for r in runs}),
                       "problems": sorted({p for r in runs for p in r["problems"]}),
                       "connections": runs[0]["connections"]}

        def stat(values: list[float]) -> dict | None:
            values = [v for v in values if v is not None]
            if not values:
                return None
            return {"median": statistics.median(values), "min": min(values), "max": max(values)}

        if good:
            d = lambda k: [r["derived"][k] for r in good]  # noqa: E731
            s = lambda k: [r["server"][k] for r in good]  # noqa: E731
            entry.update({
                "rps": stat(d("rps")),
                "requests": stat([r["wrk"]["requests"] for r in good]),
                "rps_per_core": stat(d("rps_per_core")),
                "server_cores": stat(d("server_cores")),
                "client_cores": stat(d("client_cores")),
                "errors": stat(d("errors")),
                "rss_per_conn_bytes": stat(d("rss_per_conn_bytes")),
                "pss_per_conn_bytes": stat([r["derived"].get("pss_per_conn_bytes") for r in good]),
                "peak_pss_bytes": stat([r["server"].get("peak_pss_bytes") for r in good]),
                "peak_rss_bytes": stat(s("peak_rss_bytes")),
                "idle_rss_bytes": stat(s("idle_rss_bytes")),
                "cpu_s": stat(s("cpu_s")),
                "cpu_user_s": stat(s("cpu_user_s")),
                "cpu_sys_s": stat(s("cpu_sys_s")),
                "ctxt_voluntary": stat(s("ctxt_voluntary")),
                "ctxt_involuntary": stat(s("ctxt_involuntary")),
                "peak_threads": stat(s("peak_threads")),
                "peak_processes": stat(s("peak_processes")),
                "latency_us": {q: stat([r["wrk"]["latency_us"][q] for r in good])
                               for q in ("50", "90", "99", "99.9")},
                "bottleneck": statistics.mode([r["derived"]["bottleneck"] for r in good]),
            })
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

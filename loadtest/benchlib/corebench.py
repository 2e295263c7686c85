# The core's own cost per request, without I/O: runs gearbox_core_bench (bench/core_bench.cpp,
# Google Benchmark) pinned to the server CPU before the matrix, keeps its figures in
# results.json, and renders them as the report's "The core alone" table.
from __future__ import annotations

import json
import os
import statistics
import subprocess
from pathlib import Path

from .servers import pinned

# Benchmark family -> what it drives. Each family runs with Arg 0 (the bytes are read into the
# span the core lends: the blocking pumps) and Arg 1 (handed over from the driver's memory with
# on_client_data: the ring pump's provided buffers).
FAMILIES = {
    "BM_PlaintextKeepAlive": "keep-alive `GET /plaintext`, one request per read",
    "BM_PlaintextPipelined16": "`GET /plaintext` pipelined 16 deep, 16 requests per read",
    "BM_ProxiedGet": "proxied `GET` over a pooled keep-alive upstream connection",
}
IDLE_FAMILIES = {
    "BM_IdleConnectionBytesEcho": "echo",
    "BM_IdleConnectionBytesProxy": "proxy",
}
ARGS = {"0": "lent span", "1": "handed over"}


def binary_next_to(gearbox: str) -> Path:
    return Path(gearbox).resolve().parent / "gearbox_core_bench"


def command(binary: Path, cpus: list[int], repetitions: int, min_time: float) -> list[str]:
    return pinned(cpus, [str(binary), "--benchmark_format=json",
                         f"--benchmark_repetitions={repetitions}",
                         f"--benchmark_min_time={min_time:g}"])


def _stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def parse(doc: dict) -> dict:
    """Google Benchmark's JSON -> {"rows": {run_name: figures}, "context": ...}: the median,
    min and max over the repetitions (the individual runs, not Google Benchmark's aggregates)."""
    per_run: dict[str, list[dict]] = {}
    for b in doc.get("benchmarks", []):
        if b.get("run_type", "iteration") != "iteration" or b.get("error_occurred"):
            continue
        per_run.setdefault(b.get("run_name", b["name"]), []).append(b)
    rows: dict[str, dict] = {}
    for name, runs in per_run.items():
        family, _, arg = name.partition("/")
        arg = arg.split("/", 1)[0]
        row: dict = {"family": family, "arg": arg}
        if family in FAMILIES:
            row["ns_per_req"] = _stats([r["time/req"] * 1e9 for r in runs])
            row["allocs_per_req"] = statistics.median(r["allocs/req"] for r in runs)
            row["writes_per_req"] = statistics.median(r["writes/req"] for r in runs)
        elif family in IDLE_FAMILIES:
            row["bytes_per_idle_conn"] = statistics.median(r["bytes/idle_conn"] for r in runs)
        else:
            continue
        rows[f"{family}/{arg}"] = row  # "/iterations:1" and the like dropped
    ctx = doc.get("context", {})
    return {"rows": rows,
            "context": {k: ctx[k] for k in ("library_build_type", "mhz_per_cpu", "num_cpus")
                        if k in ctx}}


def run(binary: Path, cpus: list[int], repetitions: int, min_time: float,
        timeout: float = 600) -> dict:
    """Runs the micro-benchmark; {"status": "ok", ...} or {"status": ..., "problem": ...}."""
    base = {"binary": str(binary), "cpus": cpus, "repetitions": repetitions,
            "min_time_s": min_time}
    if not os.access(binary, os.X_OK):
        return dict(base, status="not-built",
                    problem=f"{binary} is not built (make build builds it; sanitizer builds do not)")
    cmd = command(binary, cpus, repetitions, min_time)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(base, status="failed", problem=f"timed out after {timeout:g} s")
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return dict(base, status="failed",
                    problem=f"exit status {p.returncode}: {' / '.join(tail)}")
    try:
        parsed = parse(json.loads(p.stdout))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        return dict(base, status="failed", problem=f"unreadable output: {e}")
    missing = [f"{f}/{a}" for f in list(FAMILIES) + list(IDLE_FAMILIES) for a in ARGS
               if f"{f}/{a}" not in parsed["rows"]]
    if missing:
        return dict(base, status="failed", problem="no figures for " + ", ".join(missing),
                    **parsed)
    return dict(base, status="ok", **parsed)


def _ns(st: dict) -> str:
    fmt = (lambda v: f"{v:,.0f}") if st["median"] >= 100 else (lambda v: f"{v:.1f}")
    if st["n"] == 1 or st["min"] == st["max"]:
        return fmt(st["median"])
    return f"{fmt(st['median'])} ({fmt(st['min'])}–{fmt(st['max'])})"


def render(core: dict | None) -> list[str]:
    """The report's section on the core alone (empty when the run has none)."""
    if not core:
        return []
    lines = ["## The core alone: ns per request, without I/O", ""]
    if core.get("status") != "ok":
        return lines + [f"Not measured: {core.get('problem', core.get('status'))}.", ""]
    rows = core["rows"]
    lines += [
        "`gearbox_core_bench` (bench/core_bench.cpp, Google Benchmark; `make bench-core`) drives "
        "one `core::Connection` in memory: bytes in, writes acknowledged, no socket and no copy "
        "out, so this is what the HTTP core costs per request before any system call. It ran "
        f"pinned to CPU {','.join(str(c) for c in core['cpus']) or 'any'} before the matrix, "
        f"{core['repetitions']} repetition{'s' if core['repetitions'] != 1 else ''} of at least "
        f"{core['min_time_s']:g} s each; CPU time "
        "per request, median (min–max). *Lent span*: the bytes are read into the buffer the core "
        "lends (the blocking pumps: prefork, thread, pool, fiber); *handed over*: the driver "
        "owns them and the core parses them in place (uring's provided buffers).",
        "",
        "| exchange | input | ns per request | heap allocations per request | client writes "
        "per request |",
        "|---|---|---|---|---|",
    ]
    for family, about in FAMILIES.items():
        for arg, how in ARGS.items():
            r = rows.get(f"{family}/{arg}")
            if r:
                lines.append(f"| {about} | {how} | **{_ns(r['ns_per_req'])}** | "
                             f"{r['allocs_per_req']:.2f} | {r['writes_per_req']:.3g} |")
    lines += ["", "Heap bytes one keep-alive connection holds in the core while idle between "
              "requests (1,000 connections after one request each; the driver's own memory, a "
              "coroutine frame or a thread stack, is not in it):", "",
              "| mode | lent span | handed over |", "|---|---|---|"]
    for family, mode in IDLE_FAMILIES.items():
        cells = [rows.get(f"{family}/{a}", {}).get("bytes_per_idle_conn") for a in ARGS]
        lines.append(f"| {mode} | " + " | ".join("-" if c is None else f"{c:,.0f} B"
                                                 for c in cells) + " |")
    lines.append("")
    return lines

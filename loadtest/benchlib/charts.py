# The report's charts, drawn with matplotlib (Debian's python3-matplotlib), headless (Agg):
# requests per server core, latency percentiles, and memory per connection.
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from .matrix import PEERS  # noqa: E402
from .report import base_of, matrix_scenarios, med, order_key, rows_for  # noqa: E402

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]


BACKEND_COLORS = {"thread": "#1f77b4", "prefork": "#ff7f0e", "pool": "#2ca02c", "uring": "#d62728",
                  "fiber": "#9467bd"}
PEER_COLORS = {"nginx": "#7f7f7f", "go": "#bcbd22", "py-mp": "#8c564b", "py-thread": "#e377c2",
               "py-pool": "#17becf", "py-asyncio": "#393b79", "py-uvloop": "#637939"}


def color(name: str, names: list[str] | None = None) -> str:
    """One colour per backend or peer, whatever the run holds (labels share their base's)."""
    base = base_of(name)
    if base in PEER_COLORS:
        return PEER_COLORS[base]
    if base in BACKEND_COLORS:
        return BACKEND_COLORS[base]
    return PALETTE[sum(map(ord, base)) % len(PALETTE)]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _grid(n: int) -> tuple[int, int]:
    cols = min(4, n) or 1
    return math.ceil(n / cols), cols


def _thousands(x, _pos) -> str:
    if x >= 1000:
        return f"{x / 1000:g}k"
    return f"{x:g}"


def rps_per_core(data: dict, summary: dict, path: Path) -> Path:
    scs = [s["name"] for s in matrix_scenarios(data)]
    names = sorted({e["backend"] for e in summary.values()}, key=order_key)
    rows_n, cols = _grid(len(scs))
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.2 * rows_n), squeeze=False)
    for i, sc in enumerate(scs):
        ax = axes[i // cols][i % cols]
        rows = rows_for(summary, sc)
        labels, vals, lo, hi, cols_ = [], [], [], [], []
        for n, e in rows.items():
            v = e.get("rps_per_core")
            if not e["good_runs"] or not v:
                continue
            labels.append(n)
            vals.append(v["median"])
            lo.append(v["median"] - v["min"])
            hi.append(v["max"] - v["median"])
            cols_.append(color(n, names))
        y = range(len(labels))
        ax.barh(list(y), vals, xerr=[lo, hi], color=cols_, capsize=3)
        ax.set_yticks(list(y), labels)
        ax.invert_yaxis()
        ax.set_title(sc, fontsize=11, fontweight="bold")
        ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
        ax.grid(axis="x", alpha=0.3)
        top = max((v + h for v, h in zip(vals, hi)), default=0)
        for yy, v, h in zip(y, vals, hi):
            ax.text(v + h + top * 0.03, yy, _thousands(round(v, -1 if v >= 1000 else 0), None),
                    va="center", fontsize=8)
        ax.set_xlim(0, top * 1.3 if top else 1)
    for j in range(len(scs), rows_n * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle("Requests per second per server core (median, min–max bars)", fontsize=13)
    return _save(fig, path)


def latency(data: dict, summary: dict, path: Path) -> Path:
    scs = [s["name"] for s in matrix_scenarios(data)]
    names = sorted({e["backend"] for e in summary.values()}, key=order_key)
    qs = ["50", "90", "99", "99.9"]
    rows_n, cols = _grid(len(scs))
    fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.2 * rows_n), squeeze=False)
    for i, sc in enumerate(scs):
        ax = axes[i // cols][i % cols]
        for n, e in rows_for(summary, sc).items():
            if not e["good_runs"]:
                continue
            ys = [e["latency_us"][q]["median"] / 1000 if e["latency_us"][q] else float("nan")
                  for q in qs]
            ax.plot(range(len(qs)), ys, marker="o", label=n, color=color(n, names),
                    linestyle="--" if base_of(n) in PEERS else "-")
        ax.set_xticks(range(len(qs)), [f"p{q}" for q in qs])
        if any(y > 0 for line in ax.get_lines() for y in line.get_ydata()):
            ax.set_yscale("log")
        ax.set_ylabel("ms")
        ax.set_title(sc, fontsize=11, fontweight="bold")
        ax.grid(alpha=0.3, which="both")
        if ax.get_lines():
            ax.legend(fontsize=7)
    for j in range(len(scs), rows_n * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle("Latency percentiles (median of runs, log scale)", fontsize=13)
    return _save(fig, path)


def memory(data: dict, summary: dict, path: Path) -> Path:
    by_conns = sorted(matrix_scenarios(data), key=lambda s: -s["connections"])
    scs = [s["name"] for s in by_conns if s["connections"] >= 100] or [s["name"] for s in by_conns]
    names = sorted({e["backend"] for e in summary.values()}, key=order_key)
    colors = {n: color(n, names) for n in names}
    names = [n for n in names
             if any(e["backend"] == n and e["good_runs"] and e["scenario"] in scs
                    for e in summary.values())]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    width = 0.8 / max(1, len(names))
    for k, n in enumerate(names):
        per, peak = [], []
        for sc in scs:
            e = rows_for(summary, sc).get(n)
            ok = e is not None and e["good_runs"]
            per.append((med(e, "pss_per_conn_bytes") or 0) / 1024 if ok else 0)
            peak.append((med(e, "peak_pss_bytes") or 0) / 2**20 if ok else 0)
        xs = [x + (k - (len(names) - 1) / 2) * width for x in range(len(scs))]
        ax1.bar(xs, per, width, label=n, color=colors[n])
        ax2.bar(xs, peak, width, label=n, color=colors[n])
    conns = {s["name"]: s["connections"] for s in data["scenarios"]}
    ticks = [f"{sc}\n({conns[sc]:,} conns)" for sc in scs]
    for ax, title, unit in ((ax1, "Memory (PSS) added per connection held", "KiB, log scale"),
                            (ax2, "Peak memory (PSS) of the server", "MiB, log scale")):
        if any(b.get_height() > 0 for b in ax.patches):
            ax.set_yscale("log")
        for b in ax.patches:
            if b.get_height() > 0:
                v = b.get_height()
                ax.annotate(f"{v:.1f}" if v < 10 else f"{v:,.0f}",
                            (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom",
                            fontsize=7)
        ax.set_xticks(range(len(scs)), ticks)
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=11, fontweight="bold")
        ax.grid(axis="y", alpha=0.3)
        if names:
            ax.legend(fontsize=8)
    return _save(fig, path)


def _bars(ax, labels: list[str], values: list[float], title: str, unit: str,
          fmt=lambda v: f"{v:,.0f}") -> None:
    y = list(range(len(labels)))
    ax.barh(y, values, color=[color(n) for n in labels])
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10, fontweight="bold")
    ax.set_xlabel(unit)
    ax.grid(axis="x", alpha=0.3)
    top = max(values, default=0)
    for yy, v in zip(y, values):
        ax.text(v + top * 0.02, yy, fmt(v), va="center", fontsize=7)
    ax.set_xlim(0, top * 1.25 if top else 1)


def _good(summary: dict, scenario: str) -> dict[str, dict]:
    return {n: e for n, e in rows_for(summary, scenario).items() if e["good_runs"]}


def gil(data: dict, summary: dict, path: Path) -> Path:
    rows = _good(summary, "gil")
    labels = list(rows)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.9 + 0.32 * max(4, len(labels))))
    _bars(ax1, labels, [med(e, "server_cores") or 0 for e in rows.values()],
          "Server CPU used for /cpu/2 with 2 cores", "cores", lambda v: f"{v:.2f}")
    _bars(ax2, labels, [med(e, "rps") or 0 for e in rows.values()], "Requests/s", "req/s")
    fig.suptitle("The GIL lesson: ×N = threads / processes / loops (unmarked: per connection or "
                 "one loop)", fontsize=11)
    return _save(fig, path)


def multi(data: dict, summary: dict, path: Path) -> Path:
    alone, mixed = _good(summary, "multi-plaintext"), _good(summary, "multi-mixed")
    labels = sorted(set(alone) | set(mixed), key=order_key)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.9 + 0.45 * max(3, len(labels))))
    _bars(ax1, labels, [med(alone[n], "rps") if n in alone else 0 for n in labels],
          "plaintext req/s on 2 cores (shared with wrk)", "req/s")
    ys = list(range(len(labels)))
    h = 0.38
    a = [(med(alone[n], "latency_p99") or 0) / 1000 if n in alone else 0 for n in labels]
    m = [(med(mixed[n], "latency_p99") or 0) / 1000 if n in mixed else 0 for n in labels]
    ax2.barh([y - h / 2 for y in ys], a, h, label="plaintext alone", color="#aec7e8")
    ax2.barh([y + h / 2 for y in ys], m, h, label="beside a /cpu/20 connection", color="#d62728")
    ax2.set_yticks(ys, labels, fontsize=8)
    ax2.invert_yaxis()
    if any(v > 0 for v in a + m):
        ax2.set_xscale("log")
    ax2.set_xlabel("plaintext p99, ms (log)")
    ax2.set_title("A slow request's effect on its neighbours", fontsize=10, fontweight="bold")
    if labels:
        ax2.legend(fontsize=8)
    ax2.grid(axis="x", alpha=0.3, which="both")
    fig.suptitle("Single- vs multi-threaded: ×1 and ×2 threads / loops", fontsize=11)
    return _save(fig, path)


def idle(data: dict, summary: dict, path: Path) -> Path:
    scs = [s["name"] for s in data["scenarios"] if s.get("kind") == "idle"]
    fig, axes = plt.subplots(1, max(1, len(scs)), figsize=(6 * max(1, len(scs)), 4),
                             squeeze=False)
    for ax, sc in zip(axes[0], scs):
        rows = {n: e for n, e in _good(summary, sc).items() if med(e, "pss_per_conn_bytes")}
        _bars(ax, list(rows), [med(e, "pss_per_conn_bytes") / 1024 for e in rows.values()],
              f"{sc}: memory (PSS) per idle connection held", "KiB",
              lambda v: f"{v:.1f}" if v < 100 else f"{v:,.0f}")
    return _save(fig, path)


def openloop(data: dict, summary: dict, path: Path) -> Path:
    from .lessons import open_series
    fig, ax = plt.subplots(figsize=(9, 5))
    for base, series in open_series(summary).items():
        xs = [r for r, e in series]
        p99 = [(med(e, "latency_p99") or float("nan")) / 1000 for _, e in series]
        p50 = [(med(e, "latency_p50") or float("nan")) / 1000 for _, e in series]
        c = color(base)
        ax.plot(xs, p99, marker="o", color=c, label=f"{base} p99")
        ax.plot(xs, p50, marker=".", color=c, linestyle=":", alpha=0.7)
        for (r, e), y in zip(series, p99):
            if e["marked"]:
                ax.plot([r], [y], marker="x", color="black", markersize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered requests/s (open loop)")
    ax.set_ylabel("latency from intended send time, ms (p99 solid, p50 dotted; × errors)")
    ax.set_title("Latency against offered load", fontsize=11, fontweight="bold")
    ax.grid(alpha=0.3, which="both")
    rates = sorted({r for v in open_series(summary).values() for r, _ in v})
    if rates:
        ax.set_xticks(rates, [_thousands(r, None) for r in rates])
        ax.minorticks_off()
    if ax.get_lines():
        ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def render(data: dict, summary: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = [rps_per_core(data, summary, out / "rps_per_core.png"),
             latency(data, summary, out / "latency.png"),
             memory(data, summary, out / "memory.png")]
    names = {s["name"] for s in data["scenarios"]}
    if "gil" in names:
        files.append(gil(data, summary, out / "gil.png"))
    if names & {"multi-plaintext", "multi-mixed"}:
        files.append(multi(data, summary, out / "multi.png"))
    if any(s.get("kind") == "idle" for s in data["scenarios"]):
        files.append(idle(data, summary, out / "idle.png"))
    if "open" in names:
        files.append(openloop(data, summary, out / "openloop.png"))
    return files

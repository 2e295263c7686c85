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
from .report import med, order_key, rows_for  # noqa: E402

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
PEER_COLORS = {"nginx": "#7f7f7f", "go": "#bcbd22"}


def color(name: str, names: list[str]) -> str:
    if name in PEER_COLORS:
        return PEER_COLORS[name]
    own = [n for n in names if n not in PEERS]
    return PALETTE[own.index(name) % len(PALETTE)] if name in own else "#17becf"


def _grid(n: int) -> tuple[int, int]:
    cols = min(4, n) or 1
    return math.ceil(n / cols), cols


def _thousands(x, _pos) -> str:
    if x >= 1000:
        return f"{x / 1000:g}k"
    return f"{x:g}"


def rps_per_core(data: dict, summary: dict, path: Path) -> Path:
    scs = [s["name"] for s in data["scenarios"]]
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency(data: dict, summary: dict, path: Path) -> Path:
    scs = [s["name"] for s in data["scenarios"]]
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
                    linestyle="--" if n in PEERS else "-")
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def memory(data: dict, summary: dict, path: Path) -> Path:
    by_conns = sorted(data["scenarios"], key=lambda s: -s["connections"])
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
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def render(data: dict, summary: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [rps_per_core(data, summary, out / "rps_per_core.png"),
            latency(data, summary, out / "latency.png"),
            memory(data, summary, out / "memory.png")]

# The report's "The article's lessons, measured": one row per lesson of the seed article, each with
# its figure from this run, the chart that shows it and one sentence; and the tables of the
# lessons' own scenarios (gil, multi-*, idle-*, open). Every figure comes from the summary; a
# lesson whose runs are missing says so instead of guessing.
from __future__ import annotations

from .report import fmt_bytes_k, fmt_ms, fmt_num, med, order_key, rows_for


def ok(summary: dict, scenario: str, label: str) -> dict | None:
    e = summary.get(f"{scenario}/{label}")
    return e if e and e["good_runs"] else None


def val(summary: dict, scenario: str, label: str, key: str) -> float | None:
    e = ok(summary, scenario, label)
    return med(e, key) if e else None


def _k(b: float | None) -> str:
    return f"{fmt_bytes_k(b)} KiB" if b is not None else "-"


def _cores(v: float | None) -> str:
    return f"{v:.2f}" if v is not None else "-"


def _missing(what: str) -> tuple[str, str]:
    return "-", f"Not measured in this run ({what})."


def processes_gil(s: dict) -> tuple[str, str]:
    c1, c2 = val(s, "gil", "py-mp×1", "server_cores"), val(s, "gil", "py-mp×2", "server_cores")
    r1, r2 = val(s, "gil", "py-mp×1", "rps"), val(s, "gil", "py-mp×2", "rps")
    t = val(s, "gil", "py-thread", "server_cores")
    tp = [val(s, "gil", f"py-pool×{n}", "server_cores") for n in (1, 2)]
    mp = ok(s, "gil", "py-mp×2")
    if c2 is None or t is None:
        return _missing("gil with py-mp and py-thread")
    per_proc = None
    if mp and med(mp, "peak_pss_bytes") and med(mp, "peak_processes"):
        per_proc = med(mp, "peak_pss_bytes") / med(mp, "peak_processes")
    th = ok(s, "gil", "py-thread")
    fig = (f"/cpu on 2 cores: py-mp×2 {_cores(c2)} cores, {fmt_num(r2)} req/s (×1: {_cores(c1)}, "
           f"{fmt_num(r1)}); py-thread {_cores(t)} cores, py-pool×2 {_cores(tp[1])}; "
           f"{fmt_num((per_proc or 0) / 2**20, 1)} MiB PSS per Python process vs "
           f"{fmt_num((med(th, 'peak_pss_bytes') or 0) / 2**20, 1)} MiB for all of py-thread")
    if r1 and r2 and r2 / r1 >= 1.5 and (t or 0) < 1.3:
        return fig, (f"Two worker processes did {r2 / r1:.1f}× the computation of one because "
                     "each has its own interpreter and GIL, while Python threads stayed near one "
                     "core however many there were; the price is a whole interpreter's memory "
                     "per process.")
    return fig, (f"Not shown by this run: two processes did {r2 / r1 if r1 and r2 else 0:.1f}× "
                 "the work of one, so the two CPUs were not the server's to use (other "
                 "processes on the machine took them); the model predicts about 2× for processes "
                 "and 1× for threads, which hold one GIL.")


def threads_stack(s: dict) -> tuple[str, str]:
    parts, names = [], []
    for label in ("thread", "py-thread", "pool", "uring", "fiber"):
        v = val(s, "idle-1k", label, "pss_per_conn_bytes")
        if v is not None:
            parts.append(f"{label} {_k(v)}")
            names.append(label)
    if "thread" not in names:
        return _missing("idle-1k with the thread backend")
    th = ok(s, "c10k", "thread")
    fig = "per idle connection at 1,000: " + ", ".join(parts)
    if th:
        fig += f"; thread ran {fmt_num(med(th, 'peak_threads'))} threads at c10k"
    return fig, ("A thread per connection keeps the code a straight line but pays a kernel thread "
                 "and the touched pages of its stack for every connection, idle or not; the "
                 "event-driven models pay only their per-connection state.")


def pool_bounds(s: dict) -> tuple[str, str]:
    pool, thread = ok(s, "c10k", "pool"), ok(s, "c10k", "thread")
    pp, pt = ok(s, "delay", "py-pool"), ok(s, "delay", "py-thread")
    if not pool:
        return _missing("c10k with the pool backend")
    fig = (f"pool: {fmt_num(med(pool, 'peak_threads'))} threads at 10,000 connections"
           + (f" (thread: {fmt_num(med(thread, 'peak_threads'))})" if thread else ""))
    if pp:
        threads = max(1, (med(pp, "peak_threads") or 2) - 1)
        fig += (f"; /delay/100 at 1,000 connections: py-pool {fmt_num(med(pp, 'rps'))} req/s on "
                f"{fmt_num(threads)} pool threads (at most {fmt_num(threads * 10)}), py-thread "
                f"{fmt_num(med(pt, 'rps')) if pt else '-'}")
    return fig, ("A pool fixes the number of threads whatever the load, so memory stays flat; "
                 "but a pool thread that blocks (a sleep, a slow call) is lost to everyone, so a "
                 "pool of N blocking threads serves at most N waits at a time.")


def waiting(s: dict) -> tuple[str, str]:
    rows = rows_for(s, "delay")
    good = {n: e for n, e in rows.items() if e["good_runs"] and med(e, "rps")}
    if not good:
        return _missing("delay")
    per = {n: (med(e, "server_cores") or 0) / med(e, "rps") * 1e6 for n, e in good.items()}
    near = [n for n, e in good.items() if med(e, "rps") >= 0.9 * 10000]
    lo, hi = min(per, key=per.get), max(per, key=per.get)
    fig = (f"{len(near)} of {len(good)} near the 10,000 req/s that 1,000 × /delay/100 allow; "
           f"server CPU per request {lo} {per[lo]:,.0f} µs … {hi} {per[hi]:,.0f} µs")
    return fig, ("A wait costs no CPU in any model that parks it (a blocked thread, a timer, an "
                 "await); what differs is what holding the waiter costs — memory and wake-ups — "
                 "and whether the model has enough waiters (threads, processes) to hold them all.")


def cpu_stalls(s: dict) -> tuple[str, str]:
    parts = []
    for label in ("uring×1", "uring×2", "fiber×1", "fiber×2", "pool×1", "pool×2"):
        mixed = val(s, "multi-mixed", label, "latency_p99")
        alone = val(s, "multi-plaintext", label, "latency_p99")
        if mixed is not None:
            parts.append(f"{label} {fmt_ms(mixed)} ms" + (f" (alone {fmt_ms(alone)})" if alone
                                                            is not None else ""))
    a, t = ok(s, "cpu", "py-asyncio"), ok(s, "cpu", "py-thread")
    if a:
        parts.append(f"/cpu/2 p99 py-asyncio {fmt_ms(med(a, 'latency_p99'))} ms vs py-thread "
                     f"{fmt_ms(med(t, 'latency_p99')) if t else '-'} ms")
    if not parts:
        return _missing("multi-mixed and cpu")
    worse = [b for b in ("uring", "fiber", "pool")
             if (val(s, "multi-mixed", f"{b}×1", "latency_p99") or 0)
             > 2 * (val(s, "multi-mixed", f"{b}×2", "latency_p99") or float("inf"))]
    sentence = ("A request that computes holds its loop thread, so on a single-threaded loop "
                "every other connection waits behind it; a second loop or worker thread takes "
                "the others, and time-slicing threads spreads the wait.")
    if worse:
        sentence += f" Here ×1 had over twice the p99 of ×2 for {', '.join(worse)}."
    else:
        sentence += (" In this run no backend's ×1 p99 was twice its ×2 p99: the shared, busy "
                     "CPUs blurred it.")
    return ("plaintext p99 beside a connection of /cpu/20 requests: " + "; ".join(parts), sentence)


def stackful(s: dict) -> tuple[str, str]:
    parts = []
    for sc in ("idle-10k", "idle-1k"):
        got = [(n, val(s, sc, n, "pss_per_conn_bytes")) for n in ("fiber", "uring", "go",
                                                                   "py-asyncio", "py-uvloop")]
        got = [(n, v) for n, v in got if v is not None]
        if got:
            parts.append(f"{sc}: " + ", ".join(f"{n} {_k(v)}" for n, v in got))
    cs = []
    for n in ("fiber", "uring", "go", "py-asyncio"):
        e = ok(s, "c10k", n)
        if e and med(e, "requests"):
            cs.append(f"{n} {med(e, 'ctxt_voluntary') / med(e, 'requests'):.2f}")
    if cs:
        parts.append("voluntary context switches per request at c10k: " + ", ".join(cs))
    if not parts:
        return _missing("idle-1k/idle-10k")
    both = all(val(s, sc, n, "pss_per_conn_bytes") is not None for sc in ("idle-1k",)
               for n in ("fiber", "uring"))
    note = "" if both else " (fiber and uring were not both in this run)"
    return ("per idle connection — " + "; ".join(parts) + note,
            "A stackful fiber or goroutine keeps a whole stack per connection (touched lazily), "
            "a stackless coroutine only the frame the compiler sized, so idle connections are "
            "cheaper stackless; both switch in user space, without a kernel context switch.")


def single_multi(s: dict) -> tuple[str, str]:
    parts = []
    for b in ("pool", "uring", "fiber"):
        r1, r2 = val(s, "multi-plaintext", f"{b}×1", "rps"), val(s, "multi-plaintext", f"{b}×2", "rps")
        g1, g2 = val(s, "gil", f"{b}×1", "rps"), val(s, "gil", f"{b}×2", "rps")
        if r1 and r2:
            parts.append(f"{b} plaintext ×2/×1 {r2 / r1:.2f}")
        if g1 and g2:
            parts.append(f"{b} /cpu ×2/×1 {g2 / g1:.2f}")
    g1, g2 = val(s, "gil", "go×1", "rps"), val(s, "gil", "go×2", "rps")
    if g1 and g2:
        parts.append(f"go /cpu GOMAXPROCS 2/1 {g2 / g1:.2f}")
    if not parts:
        return _missing("multi-plaintext and gil")
    cpu_gains = [float(p.rsplit(" ", 1)[1]) for p in parts if "/cpu" in p]
    sentence = ("A second thread or loop can double what computes in parallel (/cpu) but not "
                "what the shared wrk and kernel bound (plaintext on two shared cores); "
                "share-nothing loops scale without locks, an M:N scheduler also balances the load.")
    if cpu_gains and max(cpu_gains) < 1.5:
        sentence += (f" This run's best /cpu gain was {max(cpu_gains):.2f}×: the second CPU was "
                     "busy with other processes' work.")
    return ("; ".join(parts), sentence)


def csp(s: dict) -> tuple[str, str]:
    go, fiber = ok(s, "plaintext", "go"), ok(s, "plaintext", "fiber")
    if not go:
        return _missing("plaintext with the Go peer (needs golang-go)")
    fig = f"plaintext per server core: go {fmt_num(med(go, 'rps_per_core'))}"
    if fiber:
        fig += f", fiber {fmt_num(med(fiber, 'rps_per_core'))}"
    gi, fi = val(s, "idle-10k", "go", "pss_per_conn_bytes"), val(s, "idle-10k", "fiber",
                                                                  "pss_per_conn_bytes")
    if gi is not None:
        fig += f"; per idle connection at 10,000: go {_k(gi)}" + (f", fiber {_k(fi)}" if fi else "")
    return fig, ("Go's net/http hands each connection to a goroutine and parks it on the "
                 "netpoller — CSP's hand-off without a visible channel; the fiber backend is the "
                 "same model in C++ (no separate channel program was written: net/http shows it).")


LESSONS = (
    ("Processes bypass the GIL but cost memory", processes_gil, "gil.png"),
    ("Threads are simple but each costs a stack", threads_stack, "idle.png"),
    ("A pool bounds threads", pool_bounds, "memory.png"),
    ("Waiting is not working (/delay)", waiting, "rps_per_core.png"),
    ("CPU-bound work stalls a single-threaded loop", cpu_stalls, "multi.png"),
    ("Stackful vs stackless", stackful, "idle.png"),
    ("Single- vs multi-threaded", single_multi, "multi.png"),
    ("CSP channels (Go)", csp, "rps_per_core.png"),
)


def lessons_table(summary: dict, chart_dir: str) -> list[str]:
    out = ["| lesson | figure from this run | chart | in one sentence |", "|---|---|---|---|"]
    for title, fn, chart in LESSONS:
        fig, sentence = fn(summary)
        out.append(f"| {title} | {fig} | [{chart}]({chart_dir}/{chart}) | {sentence} |")
    return out


# ---- the lessons' scenario tables ----

def _entries(summary: dict, scenario: str) -> dict[str, dict]:
    return rows_for(summary, scenario)


def _status(e: dict) -> str:
    return ", ".join(e["statuses"]) + (": " + "; ".join(e["problems"])[:120] if e["problems"]
                                       else "")


def load_table(summary: dict, scenario: str, background: bool = False) -> list[str]:
    head = ["target", "req/s", "server cores", "req/s per server core", "p50 ms", "p99 ms",
            "p99.9 ms", "threads / procs", "runs ok"]
    if background:
        head.insert(7, "neighbours")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, e in _entries(summary, scenario).items():
        if not e["good_runs"] and not e["marked"]:
            out.append(f"| {name} | {_status(e)} |" + " |" * (len(head) - 2))
            continue
        lat = e["latency_us"]
        cells = [("⚠ " if e["marked"] else "") + name, fmt_num(med(e, "rps")),
                 _cores(med(e, "server_cores")), fmt_num(med(e, "rps_per_core")),
                 fmt_ms(lat["50"]["median"] if lat["50"] else None),
                 fmt_ms(lat["99"]["median"] if lat["99"] else None),
                 fmt_ms(lat["99.9"]["median"] if lat["99.9"] else None),
                 f"{fmt_num(med(e, 'peak_threads'))} / {fmt_num(med(e, 'peak_processes'))}",
                 f"{e['good_runs']}/{e['runs']}"]
        if background:
            cells.insert(7, "/cpu/20 × 1 connection")
        out.append("| " + " | ".join(cells) + " |")
    return out


def idle_table(summary: dict, scenario: str) -> list[str]:
    head = ["target", "connections held", "PSS per held connection KiB", "peak PSS MiB",
            "threads / procs", "unanswered", "runs ok"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, e in _entries(summary, scenario).items():
        if not e["good_runs"] and not e["marked"]:
            out.append(f"| {name} | {_status(e)} |" + " |" * (len(head) - 2))
            continue
        out.append("| " + " | ".join([
            ("⚠ " if e["marked"] else "") + name, fmt_num(med(e, "held_connections")),
            fmt_bytes_k(med(e, "pss_per_conn_bytes")),
            fmt_num((med(e, "peak_pss_bytes") or 0) / 2**20, 1),
            f"{fmt_num(med(e, 'peak_threads'))} / {fmt_num(med(e, 'peak_processes'))}",
            fmt_num(med(e, "errors")), f"{e['good_runs']}/{e['runs']}"]) + " |")
    return out


def open_series(summary: dict) -> dict[str, list[tuple[int, dict]]]:
    """base -> [(offered rate, entry)] of the open-loop scenario, by rate."""
    out: dict[str, list[tuple[int, dict]]] = {}
    for e in summary.values():
        if e["scenario"] == "open" and e.get("rate") and (e["good_runs"] or e["marked"]):
            out.setdefault(e["base"], []).append((e["rate"], e))
    return {b: sorted(v, key=lambda x: x[0]) for b, v in sorted(out.items(),
                                                                 key=lambda kv: order_key(kv[0]))}


def saturation(series: list[tuple[int, dict]]) -> int | None:
    """The highest offered rate the target kept up with: answered ≥ 95 % of it on time (no
    errors) with a p99 under 10× its p99 at the lightest rate."""
    if not series:
        return None
    base_p99 = med(series[0][1], "latency_p99") or 1
    best = None
    for rate, e in series:
        if e["marked"] or (med(e, "rps") or 0) < 0.95 * rate:
            break
        if (med(e, "latency_p99") or 0) > 10 * max(base_p99, 1000):
            break
        best = rate
    return best


def open_table(summary: dict) -> list[str]:
    series = open_series(summary)
    if not series:
        return ["No open-loop run in this run."]
    rates = sorted({r for v in series.values() for r, _ in v})
    head = ["target"] + [f"{r:,}/s" for r in rates] + ["kept up to"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for base, v in series.items():
        by = dict(v)
        cells = [base]
        for r in rates:
            e = by.get(r)
            if e is None:
                cells.append("")
                continue
            lat = e["latency_us"]
            cells.append(("⚠ " if e["marked"] else "")
                         + f"{fmt_ms(lat['50']['median'])} / {fmt_ms(lat['99']['median'])}")
        sat = saturation(v)
        cells.append(f"{sat:,}/s" if sat else "-")
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "Cells: p50 / p99 ms from each request's intended send time; ⚠: some requests "
                "failed or timed out (5 s), i.e. past saturation. \"kept up to\": the highest "
                "offered rate answered ≥ 95 % on time with a p99 under 10× the lightest rate's."]
    return out


def sections(data: dict, summary: dict, chart_dir: str) -> list[str]:
    lines = ["## The article's lessons, measured", ""]
    lines += lessons_table(summary, chart_dir)
    lines += [""]
    charts = {"gil": "gil.png", "multi-plaintext": "multi.png", "multi-mixed": "multi.png",
              "idle-1k": "idle.png", "idle-10k": "idle.png", "open": "openloop.png"}
    shown = set()
    for sc in data["scenarios"]:
        if sc.get("group") != "lessons" or not rows_for(summary, sc["name"]):
            continue
        lines += [f"### {sc['name']}", "", f"{sc['about']} ({sc['connections']:,} connections in "
                  "this run).", ""]
        if sc.get("kind") == "idle":
            lines += idle_table(summary, sc["name"])
        elif sc.get("kind") == "open":
            lines += open_table(summary)
        else:
            lines += load_table(summary, sc["name"], background=sc["name"] == "multi-mixed")
        chart = charts.get(sc["name"])
        if chart and chart not in shown:
            shown.add(chart)
            lines += ["", f"![{sc['name']}]({chart_dir}/{chart})"]
        lines.append("")
    return lines

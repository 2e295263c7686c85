# The Markdown report: an overview, then one table per scenario (backends as rows, ratios to
# the best and to the peers) and a short explanation written from the measured figures.
from __future__ import annotations

from .matrix import BACKEND_MODELS, KNOWN_BACKENDS, PEER_CODE, PEERS, SCENARIOS


RATIO_PEERS = ("nginx", "haproxy", "go")  # the peers every table divides by (where they ran)


def base_of(label: str) -> str:
    """"pool×2@20k" -> "pool"."""
    return label.split("@", 1)[0].split("×", 1)[0]


def order_key(name: str) -> tuple:
    known = list(KNOWN_BACKENDS) + list(PEERS)
    base = base_of(name)
    rest = name[len(base):]
    workers = int(rest[1:].split("@")[0]) if rest.startswith("×") else 0
    rate = rest.split("@", 1)[1] if "@" in rest else ""
    rate_n = float(rate[:-1]) * 1000 if rate.endswith("k") else float(rate or 0)
    return (known.index(base) if base in known else len(known), base, workers, rate_n)


def med(entry: dict, key: str) -> float | None:
    if key.startswith("latency_p"):
        v = entry.get("latency_us", {}).get(key[len("latency_p"):])
        return v["median"] if v else None
    v = entry.get(key)
    return v["median"] if v else None


def fmt_num(v: float | None, digits: int = 0) -> str:
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def fmt_range(st: dict | None, scale: float = 1.0, digits: int = 0) -> str:
    if not st:
        return "-"
    m, lo, hi = st["median"] * scale, st["min"] * scale, st["max"] * scale
    if lo == hi:
        return fmt_num(m, digits)
    return f"{fmt_num(m, digits)} ({fmt_num(lo, digits)}–{fmt_num(hi, digits)})"


def fmt_ms(us: float | None) -> str:
    if us is None:
        return "-"
    ms = us / 1000
    return f"{ms:.2f}" if ms < 10 else f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}"


def fmt_bytes_k(b: float | None) -> str:
    if b is None:
        return "-"
    return f"{b / 1024:.1f}" if b < 100 * 1024 else f"{b / 1024:,.0f}"


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}×"


def rows_for(summary: dict, scenario: str) -> dict[str, dict]:
    rows = {e["backend"]: e for e in summary.values() if e["scenario"] == scenario}
    return dict(sorted(rows.items(), key=lambda kv: order_key(kv[0])))


def good(rows: dict[str, dict], peers: bool = False) -> dict[str, dict]:
    return {k: v for k, v in rows.items()
            if v["good_runs"] and (peers or v["kind"] != "peer")}


def per_request(entry: dict, key: str) -> float | None:
    v, n = med(entry, key), med(entry, "requests")
    if v is None or not n:
        return None
    return v / n


def best_worst(rows: dict[str, dict], key: str) -> tuple[str, str] | None:
    cands = [(med(v, key), k) for k, v in rows.items() if med(v, key)]
    if not cands:
        return None
    cands.sort()
    return cands[-1][1], cands[0][1]


def _why(e: dict) -> str:
    why = "; ".join(e["problems"])[:200]
    status = ", ".join(e["statuses"])
    return why if why.startswith(status) else f"{status}: {why}" if why else status


def table(rows: dict[str, dict], scenario: dict) -> list[str]:
    g = good(rows)
    best = max((med(v, "rps_per_core") or 0 for v in g.values()), default=0)
    peers = [p for p in RATIO_PEERS if p in rows and rows[p]["good_runs"]]
    head = ["backend", "req/s", "req/s per server core", "server cores", "bottleneck",
            "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "runs ok", "CPU user+sys s",
            "ctx switches vol / invol", "peak RSS / PSS MiB", "conns held",
            "PSS per held conn KiB", "threads / procs",
            "÷ best"] + [f"÷ {p}" for p in peers]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for name, e in rows.items():
        label = f"{name} (peer)" if e["kind"] == "peer" else name
        if not e["good_runs"] and not e["marked"]:
            out.append(f"| {label} | {_why(e)} |" + " |" * (len(head) - 2))
            continue
        if e["marked"]:
            label = f"⚠ {label}"
            notes.append(f"⚠ {name}: every run had wrong or missing answers, so its figures "
                         f"(those runs', correct answers only) are not in the headline or the "
                         f"ratios: {_why(e)}.")
        lat = e["latency_us"]
        cpu = None
        if e.get("cpu_user_s") and e.get("cpu_sys_s"):
            cpu = f"{e['cpu_user_s']['median']:.1f} + {e['cpu_sys_s']['median']:.1f}"
        pc = med(e, "rps_per_core")
        cells = [
            label,
            fmt_range(e["rps"]),
            f"**{fmt_range(e['rps_per_core'])}**" if not e["marked"] else fmt_range(e["rps_per_core"]),
            fmt_num(med(e, "server_cores"), 2),
            e["bottleneck"],
            fmt_ms(lat["50"]["median"] if lat["50"] else None),
            fmt_ms(lat["90"]["median"] if lat["90"] else None),
            fmt_ms(lat["99"]["median"] if lat["99"] else None),
            fmt_ms(lat["99.9"]["median"] if lat["99.9"] else None),
            f"{e['good_runs']}/{e['runs']}",
            cpu or "-",
            f"{fmt_num(med(e, 'ctxt_voluntary'))} / {fmt_num(med(e, 'ctxt_involuntary'))}",
            f"{fmt_num((med(e, 'peak_rss_bytes') or 0) / 2**20, 1)} / "
            f"{fmt_num((med(e, 'peak_pss_bytes') or 0) / 2**20, 1)}",
            fmt_num(med(e, "held_connections")),
            fmt_bytes_k(med(e, "pss_per_conn_bytes")),
            f"{fmt_num(med(e, 'peak_threads'))} / {fmt_num(med(e, 'peak_processes'))}",
            ratio(pc, best) if not e["marked"] else "-",
        ] + [ratio(pc, med(rows[p], "rps_per_core")) if not e["marked"] else "-" for p in peers]
        out.append("| " + " | ".join(cells) + " |")
        if e["good_runs"] and e["marked_runs"]:
            notes.append(f"{name}: {e['marked_runs']} of {e['runs']} runs had wrong or missing "
                         "answers and are left out of its medians.")
    if notes:
        out += [""] + [f"- {n}" for n in notes]
    return out


# ---- explanations: each returns sentences built from the figures of one scenario ----------

def _pc(e: dict) -> str:
    return f"{fmt_num(med(e, 'rps_per_core'))} req/s per core"


def _spread(g: dict[str, dict], key: str = "rps_per_core") -> str:
    bw = best_worst(g, key)
    if not bw or bw[0] == bw[1]:
        if len(g) == 1:
            name = next(iter(g))
            return f"Only {name} ran: {_pc(g[name])}."
        return ""
    b, w = bw
    r = med(g[b], key) / med(g[w], key)
    if r < 1.1:
        return (f"All backends are within {(r - 1) * 100:.0f} % of each other "
                f"({w} {fmt_num(med(g[w], key))} to {b} {_pc(g[b])}).")
    return f"{b} leads with {_pc(g[b])}, {w} trails with {_pc(g[w])} ({r:.1f}× apart)."


def _switches(g: dict[str, dict]) -> str:
    parts = []
    for name, e in g.items():
        v = per_request(e, "ctxt_voluntary")
        if v is not None:
            parts.append(f"{name} {v:.2f}")
    if not parts:
        return ""
    return "Voluntary context switches per request: " + ", ".join(parts) + "."


def _memory(g: dict[str, dict], conns: int) -> str:
    parts = []
    for name, e in g.items():
        k = med(e, "pss_per_conn_bytes")
        if k is not None:
            parts.append(f"{name} {fmt_bytes_k(k)} KiB over {fmt_num(med(e, 'held_connections'))} "
                         f"connections held ({fmt_num(med(e, 'peak_threads'))} threads"
                         f", {fmt_num(med(e, 'peak_processes'))} processes)")
    if not parts:
        return ""
    return (f"Memory (PSS) added per connection held, {conns:,} offered: " + "; ".join(parts)
            + ".")


def _model_memory_notes(g: dict[str, dict]) -> list[str]:
    notes = []
    t, p, u, f = (g.get(n) for n in ("thread", "pool", "uring", "fiber"))
    pf = g.get("prefork")
    if t:
        notes.append("thread-per-connection grows by a kernel thread and the touched pages of its "
                     f"stack per connection ({fmt_num(med(t, 'peak_threads'))} threads at the peak)")
    if pf:
        notes.append("prefork pays a whole process per concurrent connection "
                     f"({fmt_num(med(pf, 'peak_processes'))} processes at the peak), each with its "
                     "own page tables and copy-on-write pages")
    if p:
        notes.append("the pool keeps an idle connection as a registered fd and its buffers only, "
                     f"on {fmt_num(med(p, 'peak_threads'))} threads in all")
    if u:
        notes.append("uring holds a coroutine frame per connection, sized by the compiler")
    if f:
        notes.append("a fiber costs its stack (allocated whole, touched lazily) per connection")
    return notes


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _cheapest(g: dict[str, dict], key: str) -> tuple[str, str] | None:
    cands = [(med(v, key), k) for k, v in g.items() if med(v, key) is not None]
    if len(cands) < 2:
        return None
    cands.sort()
    return cands[0][1], cands[-1][1]


def explain_plaintext(g, sc, rows):
    s = [_spread(g)]
    s.append("Each request is tiny, so this measures per-request overhead: a blocking backend "
             "sleeps and wakes for every request, an event loop batches whatever is ready.")
    s.append(_switches(g))
    return s


def explain_echo(g, sc, rows):
    s = [_spread(g)]
    parts = []
    for name, e in g.items():
        rps = med(e, "rps")
        if rps:
            parts.append(f"{name} {rps * sc['body'] * 2 / 2**20:,.0f} MiB/s")
    if parts:
        s.append(f"Body bytes moved (in + out): {', '.join(parts)}. With {sc['body'] // 1024} KiB "
                 "bodies the cost is copying through the kernel, which every model pays alike; "
                 "the gaps that remain are per-request overhead and how many read/write calls a "
                 "backend makes per body.")
    return s


def _thread_acceptor_note(e: dict | None) -> str | None:
    """Why thread-per-connection times out at many busy connections on one core, with this
    run's figures (None when thread answered everything)."""
    if not e or not (e.get("marked") or e.get("marked_runs")):
        return None
    rps, p50 = med(e, "rps"), med(e, "latency_p50")
    if not rps or not p50:
        return None
    waiting = rps * p50 / 1e6
    tail = med(e, "latency_p99.9")
    tail_text = (f" (p99.9 {fmt_ms(tail)} ms here)" if tail else "")
    return (f"thread's timeouts are the model's own cost on one core: about {fmt_num(waiting)} "
            f"requests wait for the CPU at any moment ({fmt_num(rps)} req/s × a p50 of "
            f"{fmt_ms(p50)} ms, Little's law), each a runnable connection thread, and the "
            "acceptor is one thread more, so the fair scheduler gives it about 1/"
            f"{fmt_num(waiting)} of the core: once the first connections are busy, the rest "
            "wait in the listen backlog (accepted by the kernel, their requests already "
            "written; once it is full, in SYN retries) and those still waiting after wrk's 5 s "
            "count as timeouts. The acceptor "
            "already accepts until the backlog is empty each time it runs; what it lacks is "
            "turns, and a nice value buys a factor of at most ~87 (-20 against 0) against "
            "thousands. Once accepted, each connection still waits its turn among thousands of "
            f"time-sliced threads, whose tail is long{tail_text}. The loops (pool, uring, fiber, "
            "nginx) accept between requests on the thread that serves them, and serve in turn.")


def explain_c10k(g, sc, rows):
    s = [_spread(g), _memory(g, sc["connections"])]
    every = {**g, **{n: e for n, e in rows.items() if e.get("marked") and n not in PEERS}}
    capped = [f"{n} held at most {fmt_num(med(e, 'held_connections'))} connections at once "
              f"({fmt_num(med(e, 'peak_threads'))} threads in {fmt_num(med(e, 'peak_processes'))} "
              "processes), the others waited in the listen backlog"
              for n, e in every.items()
              if (med(e, "held_connections") or 0) < 0.9 * sc["connections"]]
    if capped:
        s.append(_sentence("; ".join(capped)) + ".")
    for n, e in every.items():
        if e.get("marked") or e.get("marked_runs"):
            s.append(f"{n} had wrong or missing answers in {e['marked_runs']} of {e['runs']} runs "
                     "(connections it could not take in time, from listen-backlog overflow or "
                     "worker or connection limits, time out in wrk).")
    note = _thread_acceptor_note(every.get("thread"))
    if note:
        s.append(note)
    low_high = _cheapest(g, "pss_per_conn_bytes")
    notes = _model_memory_notes(g)
    if low_high:
        lo, hi = low_high
        s.append(f"Per connection held, {lo} is the cheapest and {hi} the dearest: "
                 + "; ".join(notes) + ".")
    elif notes:
        s.append(_sentence("; ".join(notes)) + ".")
    return s


def explain_delay(g, sc, rows):
    conns = sc["connections"]
    ms = float(sc["path"].rsplit("/", 1)[1])
    cap = conns * 1000 / ms
    parts = [f"{n} {fmt_num(med(e, 'rps'))} req/s on {fmt_num(med(e, 'server_cores'), 2)} cores"
             for n, e in g.items()]
    s = [f"{conns:,} connections each waiting {ms:.0f} ms allow at most {fmt_num(cap)} req/s; "
         f"measured: {', '.join(parts)}."]
    per = {n: (med(e, "server_cores") or 0) / med(e, "rps") * 1e6 for n, e in g.items()
           if med(e, "rps")}
    if len(per) > 1:
        lo, hi = min(per, key=per.get), max(per, key=per.get)
        s.append("Waiting is not working: every model can hold the waiters (a blocked thread or "
                 "process, a timer); what differs is what each wait costs — server CPU per "
                 "request: " + ", ".join(f"{n} {v:,.0f} µs" for n, v in per.items())
                 + f", {lo} the cheapest and {hi} the dearest.")
    short = []
    for n, e in g.items():
        rps = med(e, "rps") or 0
        if rps < 0.8 * cap:
            short.append(f"{n} served only about {rps * ms / 1000:,.0f} requests at a time "
                         f"(Little's law) with {fmt_num(med(e, 'peak_threads'))} threads in "
                         f"{fmt_num(med(e, 'peak_processes'))} processes: the rest of the "
                         "connections queued for a worker")
    if short:
        s.append(_sentence("; ".join(short)) + ".")
    s.append(_memory(g, conns))
    return s


def explain_cpu(g, sc, rows):
    ms = float(sc["path"].rsplit("/", 1)[1])
    cores = max((med(e, "server_cores") or 0 for e in g.values()), default=0)
    cap = 1000 / ms
    parts = [f"{n} {fmt_num(med(e, 'rps'))} req/s (p99 {fmt_ms(e['latency_us']['99']['median'])} ms)"
             for n, e in g.items()]
    s = [f"Each request burns {ms:.0f} ms of CPU, so one server core caps at {fmt_num(cap)} req/s "
         f"and the runs used up to {cores:.2f} cores: {', '.join(parts)}."]
    per = {n: (med(e, "server_cores") or 0) / med(e, "rps") * 1000 for n, e in g.items()
           if med(e, "rps")}
    if per:
        s.append("Server CPU per request: " + ", ".join(f"{n} {v:.2f} ms" for n, v in per.items())
                 + ".")
    low = [n for n, v in per.items() if v < 0.8 * ms]
    if low:
        s.append(f"{', '.join(low)} spent less than the {ms:.0f} ms asked for: gearbox calibrates "
                 "/cpu (loop iterations per ms) at start-up, and a CPU busy with other work then "
                 "makes the calibration low.")
    lat = _cheapest(g, "latency_p99")
    if lat:
        lo, hi = lat
        s.append(f"The computation runs on whatever thread the backend calls the core from: "
                 f"{hi} has the worst p99 and {lo} the best; where one loop thread computes, every "
                 "other connection on that loop waits behind it, whereas per-connection threads, "
                 "processes or pool workers are time-sliced by the kernel. Pinned to one core, no "
                 "model can pass the cap; --server-cpus N shows which ones spread the work.")
    return s


def explain_proxy(g, sc, rows):
    s = [_spread(g)]
    client = [f"{n} {fmt_num(med(e, 'client_cores'), 2)}" for n, e in g.items()]
    s.append("Each request is parsed twice and crosses two connections, with the upstream "
             "connection reused from the keep-alive pool; the client core also runs the upstream, "
             "so its share (" + ", ".join(client) + " cores) bounds the raw req/s.")
    for peer in ("nginx", "haproxy"):
        if peer in rows and rows[peer]["good_runs"]:
            s.append(f"{peer} does the same proxying at {_pc(rows[peer])}.")
    return s


EXPLAIN = {
    "plaintext": explain_plaintext,
    "echo-4k": explain_echo,
    "echo-256k": explain_echo,
    "c1k": explain_c10k,
    "c10k": explain_c10k,
    "delay": explain_delay,
    "cpu": explain_cpu,
    "proxy": explain_proxy,
    "pipelined": lambda g, sc, rows: [_spread(g), _switches(g)],
}


def _measured(e: dict | None) -> float | None:
    """A row's median req/s per server core over its correct runs; None when it has none."""
    return med(e, "rps_per_core") if e and e["good_runs"] else None


def _overlap(x: dict, y: dict) -> bool:
    """Two min–max ranges of more than one value between them overlap: the gap is noise."""
    spread = x["min"] != x["max"] or y["min"] != y["max"]
    return spread and x["min"] <= y["max"] and y["min"] <= x["max"]


def metrics_cost(summary: dict) -> list[str]:
    """Per gearbox backend: plaintext req/s per server core without metrics beside the same
    load with metrics counted and scraped every second, and their ratio (medians, this run)."""
    plain, scraped = rows_for(summary, "plaintext"), rows_for(summary, "metrics")
    names = sorted({n for n, e in {**plain, **scraped}.items() if e["kind"] != "peer"},
                   key=order_key)
    out = ["### What the metrics cost", "",
           "Requests per server core (correct answers per server CPU-second) for the same load, "
           "GET /plaintext on 64 keep-alive connections: *without* is the plaintext scenario "
           "(no `--admin-listen`, so gearbox counts nothing), *with* is this one (every "
           "response counted, `/metrics` rendered and GET once a second by the runner; the "
           "admin thread's CPU is the server's, so it is in the cost). Medians over each "
           "side's correct runs in this run, interleaved; ratio = with ÷ without, so below 1× "
           "is what counting and scraping cost. \"inside the spread\": the two sides' min–max "
           "ranges overlap, so this run cannot tell the gap from the shared machine's noise.",
           "",
           "| backend | without metrics | with metrics scraped every second | ratio | "
           "scrapes per run |", "|---|---|---|---|---|"]
    if not names:
        return out + ["| (no gearbox backend ran plaintext or metrics) | not measured | not "
                      "measured | not measured | - |"]

    def side(e: dict | None) -> str:
        if _measured(e) is not None:
            return fmt_range(e["rps_per_core"])
        return "not measured" + (f" ({', '.join(e['statuses'])})" if e else "")

    for n in names:
        a, b = plain.get(n), scraped.get(n)
        pa, pb = _measured(a), _measured(b)
        r = f"{pb / pa:.2f}× ({(pb / pa - 1) * 100:+.1f} %)" if pa and pb else "not measured"
        if pa and pb and _overlap(a["rps_per_core"], b["rps_per_core"]):
            r += ", inside the spread"
        scrapes = fmt_num(med(b, "metrics_scrapes")) if pb is not None else "-"
        out.append(f"| {n} | {side(a)} | {side(b)} | {r} | {scrapes} |")
    return out


# Tables a scenario's section adds after its own (scenario -> lines from the summary).
EXTRA = {"metrics": metrics_cost}


def explanation(scenario: dict, rows: dict[str, dict]) -> str:
    g = good(rows)
    if not g:
        return "No gearbox backend completed this scenario."
    fn = EXPLAIN.get(scenario["name"], lambda g, sc, rows: [_spread(g)])
    sentences = [x for x in fn(g, scenario, rows) if x]
    bott = sorted({e["bottleneck"] for e in g.values()})
    if len(bott) > 1:
        each = ", ".join(f"{n} {e['bottleneck']}" for n, e in g.items())
        sentences.append(f"Bottleneck: {each}.")
    else:
        sentences.append(f"Bottleneck of every backend: {bott[0]}.")
    return " ".join(sentences)


def matrix_scenarios(data: dict) -> list[dict]:
    return [s for s in data["scenarios"] if s.get("group", "matrix") == "matrix"]


def overview(data: dict, summary: dict) -> list[str]:
    scs = [s["name"] for s in matrix_scenarios(data)]
    names = sorted({e["backend"] for e in summary.values() if e["scenario"] in scs}, key=order_key)
    out = ["| scenario | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for sc in scs:
        rows = rows_for(summary, sc)
        cells = []
        for n in names:
            e = rows.get(n)
            if e is None:
                cells.append("")
            elif e["marked"]:
                cells.append("⚠ errors")
            elif not e["good_runs"]:
                cells.append(", ".join(e["statuses"]))
            else:
                cells.append(fmt_num(med(e, "rps_per_core")))
        out.append(f"| {sc} | " + " | ".join(cells) + " |")
    return out


def more_runs(data: dict) -> str:
    """The header's aside on the scenarios that run more often than --repeat says, e.g.
    ' (proxy 5 ×: ...)'; empty when none does."""
    ran = {s["name"] for s in data["scenarios"]}
    more = [f"{sc.name} {sc.runs(data['repeat'])} ×" for sc in SCENARIOS
            if sc.name in ran and sc.runs(data["repeat"]) > data["repeat"]]
    return f" ({', '.join(more)}: client-bound, so the noisiest)" if more else ""


def render(data: dict, summary: dict, chart_dir: str) -> str:
    h = data["host"]
    lines = [
        "# gearbox load-test report",
        "",
        f"{h.get('time', '')} · {h.get('cpu_model', 'unknown CPU')} · {h['cpus']} CPUs · "
        f"Linux {h['kernel']} · server on CPU {h['server_cpus']}, wrk and upstream on CPU "
        f"{h['client_cpus']} · {data['repeat']} × {data['duration_s']:g} s per backend and "
        f"scenario{more_runs(data)}, interleaved; medians with (min–max)."
        + (" **Smoke run: 1 s, reduced connections; not a measurement.**" if data["smoke"] else "")
        + (" Quick preset: one run each, so no min–max; shorter runs than the full one."
           if data.get("quick") else "")
        + " The lessons' gil and multi-* scenarios give the server both CPUs, shared with wrk.",
        "",
        "Backends: " + "; ".join(f"**{b}** — {BACKEND_MODELS[b]}" if b in BACKEND_MODELS
                                 else f"**{b}**" for b in data["backends"])
        + ".",
    ]
    if data.get("peers"):
        lines.append("Peers: " + "; ".join(f"**{p}** — {BACKEND_MODELS[p]}" for p in data["peers"])
                     + ".")
    for b, why in data.get("skipped_backends", {}).items():
        lines.append(f"Not run: {b} ({why}).")
    foreign = sorted(r["derived"]["foreign_server_load"] for r in data["runs"]
                     if r.get("derived") and r["derived"].get("server_cpu_busy") is not None
                     and r.get("load", "wrk") != "idle")
    if foreign:
        mid = foreign[len(foreign) // 2]
        flagged = sum(1 for f in foreign if f > 0.15)
        lines.append(f"\nOther processes on the machine used a median {mid:.2f} of the server's "
                     f"CPU during the runs ({flagged} of {len(foreign)} runs above 0.15, flagged "
                     "\"figures disturbed\" below): raw req/s suffer most; req/s per server core "
                     "divides by the CPU the server itself got.")
    if data.get("peers"):
        lines += ["", "How each peer is written (every one keep-alive with Content-Length, checked "
                  "byte for byte before it is measured; the Python peers share one request "
                  "handler, loadtest/peers/python/httpcore.py, so that only the concurrency model "
                  "differs):", "", "| peer | source | how |", "|---|---|---|"]
        lines += [f"| {p} | `{PEER_CODE[p][0]}` | {PEER_CODE[p][1]} |" for p in data["peers"]
                  if p in PEER_CODE]
    lines += [
        "",
        "The headline figure is **requests per server core**: correct answers per second "
        "divided by the server's CPU share, both over one window (wrk's lifetime: the server's "
        "user + system seconds, every thread and process of its tree, read from /proc right "
        "before wrk starts and right after it exits), i.e. correct answers per server "
        "CPU-second. A correct answer is status 200 with exactly the expected body (checked by "
        "bench.lua for every response, and byte for byte by the runner before each load); a "
        "run with any socket error, timeout, wrong status or body is marked ⚠ and kept out of "
        "the headline. One wrk thread on the other core saturates at about nginx's speed, so "
        "raw req/s often measures wrk; the *bottleneck* column says which side used ≥85 % of "
        "its CPUs (client = wrk plus, for proxy, the upstream).",
        "",
        "## Overview: requests per server core",
        "",
    ]
    lines += overview(data, summary)
    lines += ["", f"![requests per server core]({chart_dir}/rps_per_core.png)", "",
              f"![latency percentiles]({chart_dir}/latency.png)", "",
              f"![memory per connection]({chart_dir}/memory.png)", ""]
    from . import corebench
    lines += corebench.render(data.get("core_bench"))
    by_name = {s.name: s for s in SCENARIOS}
    for sc in matrix_scenarios(data):
        rows = rows_for(summary, sc["name"])
        about = sc.get("about") or (by_name[sc["name"]].about if sc["name"] in by_name else "")
        lines += [f"## {sc['name']}", "", f"{about} ({sc['connections']:,} connections in this run).",
                  ""]
        lines += table(rows, sc)
        lines += ["", explanation(sc, rows), ""]
        if sc["name"] in EXTRA:
            lines += EXTRA[sc["name"]](summary) + [""]
    from . import lessons
    lines += lessons.sections(data, summary, chart_dir)
    problems = [r for r in data["runs"] if r["problems"]]
    if problems:
        lines += ["## Problems seen", ""]
        seen = set()
        # A skip is listed once, with the scenarios it hit (every one, or only some: haproxy's
        # descriptors at c10k).
        skipped_in: dict[tuple, list[str]] = {}
        scheduled: dict[str, set] = {}
        for r in data["runs"]:
            scheduled.setdefault(r["backend"], set()).add(r["scenario"])
            if r["status"] in ("skipped", "unavailable"):
                for p in r["problems"]:
                    names = skipped_in.setdefault((r["backend"], p), [])
                    if r["scenario"] not in names:
                        names.append(r["scenario"])
        for r in problems:
            for p in r["problems"]:
                if r["status"] in ("skipped", "unavailable"):
                    key = (r["backend"], p)
                    names = skipped_in[key]
                    every = set(names) == scheduled[r["backend"]]
                    where = f"{r['backend']} ({'every scenario' if every else ', '.join(names)})"
                else:
                    key = (r["backend"], r["scenario"], r["rep"], p)
                    where = f"{r['backend']} / {r['scenario']} (run {r['rep'] + 1})"
                if key not in seen:
                    seen.add(key)
                    lines.append(f"- {where}: {p}")
        lines.append("")
    lines += [
        "## Method",
        "",
        "- `loadtest/run.py` (`make bench`); wrk with `loadtest/wrk/bench.lua`, `--latency`, "
        "`--timeout 5s`, one thread per client CPU (4 for c10k, to spread its connection "
        "set-up, which is included in its figures: c10k runs at least 15 s); the open-file limit (RLIMIT_NOFILE) raised to "
        f"{h.get('fd_limit', 'the hard limit')} for wrk and the servers.",
        "- CPU from /proc/<pid>/stat per process of the server's tree (all threads included), "
        "context switches from /proc/<pid>/task/<tid>/status per thread (sampled every second "
        "and at the end; a thread that exits between samples loses at most its last second), "
        "RSS as the sum of VmRSS over the tree sampled every 100 ms (shared pages of prefork's "
        "workers are counted once per process), PSS (shared pages split between the processes "
        "using them) from smaps_rollup every second. Connections held = the most established "
        "TCP sockets on the server's port that a process of its tree had a descriptor for "
        "(/proc/<pid>/fd against /proc/net/tcp, sampled with PSS; connections still in the "
        "listen backlog are not held). Memory per connection = (peak PSS − idle PSS) / "
        "connections held; it leaves out kernel memory (a kernel stack per thread, socket "
        "buffers).",
        "- Each server gets as many threads/processes/loops as it has CPUs: a gearbox backend "
        "with a `--threads`/`--workers` flag of its own (from `gearbox --help`) gets it set to "
        "the server CPUs (per-connection models have none); nginx `worker_processes`, HAProxy "
        "`nbthread` and Go's GOMAXPROCS likewise.",
        "- proxy: the upstream is nginx (`return 200`, one worker) on the client CPU; a proxy run "
        "fails unless the upstream's stub_status counted at least as many requests as the "
        "client got answers.",
        "- metrics: gearbox started with `--admin-listen 127.0.0.1:<a free port>` and the "
        "runner (a thread of its own, on the client CPU) GETs /metrics at the window's start and "
        "then once a second until wrk exits; a run is an error, out of the medians, if a scrape "
        "failed (not 200, no `gearbox_http_requests_total` sample, a socket error or 2 s "
        "timeout), if fewer than window − 1 s scrapes happened, or if the scrape after the load "
        "counted fewer responses than the client got answers.",
        "- errors (⚠) = wrk's socket errors (connect, read, write, timeout) plus answers with a "
        "status other than 200 or a body other than the expected one.",
        "",
    ]
    return "\n".join(lines)

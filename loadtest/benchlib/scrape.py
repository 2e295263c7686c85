# The metrics scenario's scraper: a thread of the runner that GETs gearbox's /metrics (on its
# --admin-listen port) once a second for the whole load window, as Prometheus would, and keeps
# what every answer was, so that the runner can refuse a run whose scrapes failed.
from __future__ import annotations

import http.client
import math
import re
import threading
import time

NAME = "gearbox_http_requests_total"  # responses sent, by method and status class: every answer has it
# One sample of it: the name, its labels if any, the value (Prometheus text format 0.0.4).
_SAMPLE = re.compile(r"^" + NAME + r"(?:\{[^}]*\})?\s+(\S+)", re.M)


def requests_total(text: str) -> float | None:
    """The sum of every gearbox_requests_total sample in a /metrics body; None without one."""
    values = [float(v) for v in _SAMPLE.findall(text)]
    return sum(values) if values else None


def scrape_once(port: int, timeout: float = 2.0) -> dict:
    """One GET /metrics on 127.0.0.1:port, on a connection of its own: {"ok", "problem",
    "requests" (the summed gearbox_requests_total), "s" (how long it took)}."""
    t0 = time.monotonic()
    out: dict = {"ok": False, "problem": "", "requests": None}
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            body = resp.read().decode("utf-8", "replace")
        finally:
            conn.close()
        total = requests_total(body)
        if resp.status != 200:
            out["problem"] = f"status {resp.status}"
        elif total is None:
            out["problem"] = f"200 without a {NAME} sample ({len(body)} bytes)"
        else:
            out.update(ok=True, requests=total)
    except (OSError, http.client.HTTPException) as e:
        out["problem"] = f"{type(e).__name__}: {e}"
    out["s"] = round(time.monotonic() - t0, 3)
    return out


class Scraper:
    """GETs /metrics at once on start() and then once a second until stop()."""

    def __init__(self, port: int, interval: float = 1.0, timeout: float = 2.0):
        self.port, self.interval, self.timeout = port, interval, timeout
        self.scrapes: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-scraper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops scraping; a scrape in flight is finished and kept."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            self.scrapes.append(scrape_once(self.port, self.timeout))
            due = max(due + self.interval, time.monotonic())  # a slow scrape: no catch-up burst
            if self._stop.wait(due - time.monotonic()):
                break


def problems(scrapes: list[dict], window_s: float) -> list[str]:
    """Why the scrapes of a load window of window_s seconds do not count: any failed scrape,
    or fewer than window_s - 1 of them (and never none)."""
    out = []
    bad = [s for s in scrapes if not s["ok"]]
    if bad:
        out.append(f"{len(bad)} of {len(scrapes)} /metrics scrapes failed (first: "
                   f"{bad[0]['problem']})")
    need = max(1, math.ceil(window_s - 1))
    if len(scrapes) < need:
        out.append(f"only {len(scrapes)} /metrics scrapes in a {window_s:.1f} s window "
                   f"(one a second: at least {need})")
    return out

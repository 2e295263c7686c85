# Tests of the load-test runner's pieces: --help parsing, wrk output, /proc readings, the
# aggregation and the report; and the whole runner against the Python stand-in server.
# Run: python3 -m unittest discover -s loadtest/tests
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from benchlib import corebench, matrix, procstat, report, runner, scrape, servers, wrk  # noqa: E402

GEARBOX_HELP = """gearbox: an HTTP/1.1 echo server and reverse proxy
Usage:
  gearbox [OPTION...]

  -b, --backend arg          concurrency backend (default: thread)
      --max-connections arg  connections served at once (default 10000)
      --backlog arg          listen(2) backlog (default 511)
      --workers N          prefork: most worker processes (default 256); uring: event
                           loops, one thread and ring each (default 1)
      --threads N          pool/fiber: worker threads (default 0 = one per core)

Backends:
  thread      one OS thread per connection, blocking I/O
  prefork     worker processes, one connection each, forked by a master
  pool        epoll reactor handing ready connections to a worker thread pool
  fiber       Boost.Fiber M:N over OS threads, a netpoller
  uring       one thread, one io_uring, one C++20 coroutine per connection (unavailable here: io_uring is not permitted)
"""


class ParseHelp(unittest.TestCase):
    def test_backends_section(self):
        info = matrix.parse_help(GEARBOX_HELP)
        self.assertEqual(info.source, "help")
        self.assertEqual(info.backends, ["thread", "prefork", "pool", "fiber"])
        self.assertIn("uring", info.unavailable)
        self.assertIn("not permitted", info.unavailable["uring"])
        self.assertIn("--max-connections", info.flags)
        self.assertIn("--backlog", info.flags)

    def test_backend_flags_from_help(self):
        # New backends and their flags come from --help alone: fiber's --threads, uring's
        # --workers (named on a wrapped continuation line); prefork's --workers caps processes
        # of one connection each, so it is no thread count; thread has none.
        info = matrix.parse_help(GEARBOX_HELP)
        self.assertEqual(info.parallel_flag("fiber"), "--threads")
        self.assertEqual(info.parallel_flag("pool"), "--threads")
        self.assertEqual(info.parallel_flag("uring"), "--workers")
        self.assertIsNone(info.parallel_flag("prefork"))
        self.assertIsNone(info.parallel_flag("thread"))
        self.assertIn("--workers", info.backend_flags["prefork"])

    def test_real_help_layout(self):
        # gearbox's own layout: cxxopts groups (" Backends options:") before "Backends:".
        text = (" Backends options:\n      --threads N          pool: worker threads (default 0)\n"
                "      --max-connections N  connections served at once (default 10000)\n\n"
                "Backends:\n  prefork   worker processes, one connection each\n"
                "  pool      epoll reactor handing ready connections to a pool\n")
        info = matrix.parse_help(text)
        self.assertEqual(info.backends, ["prefork", "pool"])
        self.assertEqual(info.parallel_flag("pool"), "--threads")

    def test_option_description_list(self):
        info = matrix.parse_help("  -b, --backend arg  one of: thread|pool|fiber (default: thread)\n")
        self.assertEqual(info.backends, ["thread", "pool", "fiber"])

    def test_fallback(self):
        info = matrix.parse_help("Usage: gearbox [options]\n")
        self.assertEqual(info.source, "fallback")
        self.assertEqual(info.backends, list(matrix.KNOWN_BACKENDS))

    def test_scenarios_unique_and_sane(self):
        names = [s.name for s in matrix.SCENARIOS]
        self.assertEqual(len(names), len(set(names)))
        for s in matrix.SCENARIOS:
            self.assertTrue(s.path.startswith("/"))
            self.assertGreater(s.conns(True), 0)
            self.assertLessEqual(s.conns(True), 1000, "smoke must stay small")


class WrkOutput(unittest.TestCase):
    def test_parse(self):
        line = wrk.MARK + json.dumps({"requests": 7, "errors": {"status": 1}})
        self.assertEqual(wrk.parse_output("Running 1s\n" + line + "\n")["requests"], 7)

    def test_missing_line(self):
        with self.assertRaises(wrk.WrkError):
            wrk.parse_output("unable to connect to 127.0.0.1:1 Connection refused\n")

    def test_command_bounds_threads_and_pins(self):
        argv = wrk.command("http://127.0.0.1:1/x", "POST", 4096, "=echo", 2, 8, 1.0, [1])
        if shutil.which("taskset"):
            self.assertEqual(argv[:3], ["taskset", "-c", "1"])
        self.assertEqual(argv[argv.index("-t") + 1], "2")
        self.assertEqual(argv[-4:], ["--", "POST", "4096", "=echo"])
        deep = wrk.command("http://127.0.0.1:1/x", "GET", 0, "ok", 2, 1, 1.0, [1], pipeline=16)
        self.assertEqual(deep[-5:], ["--", "GET", "0", "ok", "16"])

    def test_incorrect_counts_bad_answers(self):
        f = {"errors": {"connect": 0, "read": 0, "write": 0, "status": 3, "timeout": 2},
             "bad_status": 3, "bad_body": 4}
        self.assertEqual(wrk.incorrect(f), {"timeout": 2, "bad status": 3, "bad body": 4})


class Proc(unittest.TestCase):
    def test_parse_stat_odd_comm(self):
        fields = ["S", "42"] + ["0"] * 9 + ["250", "150"] + ["0"] * 4 + ["3", "0", "0", "0", "10"]
        text = "123 (a (b) c) " + " ".join(fields)
        st = procstat.parse_stat(text)
        self.assertEqual(st["ppid"], 42)
        self.assertAlmostEqual(st["utime"], 250 / procstat.CLK_TCK)
        self.assertAlmostEqual(st["stime"], 150 / procstat.CLK_TCK)
        self.assertEqual(st["threads"], 3)
        self.assertEqual(st["rss"], 10 * procstat.PAGE)

    def test_parse_ctxt(self):
        self.assertEqual(procstat.parse_ctxt("Name:\tx\nvoluntary_ctxt_switches:\t5\n"
                                             "nonvoluntary_ctxt_switches:\t9\n"), (5, 9))

    def test_tree_sums_children_cpu(self):
        # Parent and child each burn 0.4 s of CPU once told to (a flag file), after the
        # baseline, and say so (a file each): no fixed sleeps, so a busy machine only slows it.
        with tempfile.TemporaryDirectory() as d:
            go, done = Path(d) / "go", Path(d) / "done"
            code = ("import os, sys, time\n"
                    "pid = os.fork()\n"
                    f"while not os.path.exists({str(go)!r}): time.sleep(0.01)\n"
                    "end = time.process_time() + 0.4\n"
                    "while time.process_time() < end: pass\n"
                    f"open({str(done)!r} + str(os.getpid()), 'w').close()\n"
                    "time.sleep(60)\n")
            proc = subprocess.Popen([sys.executable, "-c", code])
            try:
                deadline = time.monotonic() + 30
                while len(procstat.process_tree(proc.pid)) < 2 and time.monotonic() < deadline:
                    time.sleep(0.02)
                sampler = procstat.TreeSampler(proc.pid)
                base = sampler.baseline()
                self.assertEqual(base.processes, 2)
                go.touch()
                while len(list(Path(d).glob("done*"))) < 2 and time.monotonic() < deadline:
                    time.sleep(0.05)
                sampler.start()
                time.sleep(0.2)
                sampler.stop()
                t = sampler.totals()
                self.assertGreater(t["cpu_user_s"] + t["cpu_sys_s"], 0.6)
                self.assertEqual(t["peak_processes"], 2)
                self.assertGreater(t["peak_rss_bytes"], 0)
                self.assertGreater(t["peak_pss_bytes"], 0)
                self.assertLessEqual(t["peak_pss_bytes"], t["peak_rss_bytes"])
            finally:
                for pid in procstat.process_tree(proc.pid)[::-1]:
                    os.kill(pid, signal.SIGKILL)
                proc.wait()


class ReapedChildren(unittest.TestCase):
    def test_exited_workers_cpu_counts(self):
        # A parent that, after the baseline, forks 5 workers burning 60 ms each and reaps them:
        # none is ever sampled alive, their CPU must still count (via the parent's cutime).
        code = ("import os, sys, time\n"
                "sys.stdin.readline()\n"
                "for _ in range(5):\n"
                "    pid = os.fork()\n"
                "    if pid == 0:\n"
                "        end = time.process_time() + 0.06\n"
                "        while time.process_time() < end: pass\n"
                "        os._exit(0)\n"
                "    os.waitpid(pid, 0)\n"
                "print('done', flush=True)\n"
                "time.sleep(5)\n")
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.2)
            sampler = procstat.TreeSampler(proc.pid)
            sampler.baseline()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            self.assertEqual(proc.stdout.readline().strip(), "done")
            sampler.stop()
            t = sampler.totals()
            self.assertGreater(t["cpu_s"], 0.25)
            self.assertLess(t["cpu_s"], 1.0)
        finally:
            proc.kill()
            proc.wait()
            proc.stdin.close()
            proc.stdout.close()


def fake_record(backend, scenario, rep, rps, cpu, rss=50 << 20, status="ok"):
    return {
        "backend": backend, "kind": "peer" if backend in runner.PEERS else "gearbox",
        "scenario": scenario, "rep": rep, "connections": 64, "status": status, "problems": [],
        "server": {"cpu_s": cpu, "cpu_user_s": cpu * 0.6, "cpu_sys_s": cpu * 0.4, "ctxt_voluntary": 1000,
                   "ctxt_involuntary": 10, "peak_rss_bytes": rss, "peak_pss_bytes": rss,
                   "idle_pss_bytes": 10 << 20, "peak_threads": 65,
                   "peak_processes": 1, "samples": 10, "idle_rss_bytes": 10 << 20},
        "wrk": {"requests": int(rps), "correct": int(rps), "duration_us": 1_000_000, "errors": {},
                "latency_us": {"50": 500, "90": 900, "99": 2000, "99.9": 5000}},
        "derived": {"rps": rps, "server_cores": cpu, "client_cores": 1.0,
                    "rps_per_core": rps / cpu, "errors": 0 if status == "ok" else 5,
                    "held_connections": 64,
                    "rss_per_conn_bytes": (rss - (10 << 20)) / 64,
                    "pss_per_conn_bytes": (rss - (10 << 20)) / 64, "bottleneck": "server"},
    }


class Report(unittest.TestCase):
    def data(self):
        runs = []
        for rep in range(3):
            for sc in matrix.SCENARIOS:
                runs.append(fake_record("thread", sc.name, rep, 10000 + rep * 100, 1.0))
                runs.append(fake_record("pool", sc.name, rep, 20000 + rep * 100, 0.8, rss=20 << 20))
                runs.append(fake_record("nginx", sc.name, rep, 40000, 1.0))
        runs.append({"backend": "prefork", "kind": "gearbox", "scenario": "plaintext", "rep": 0,
                     "connections": 64, "status": "start-failed", "problems": ["boom"]})
        return {"host": {"cpus": 2, "server_cpus": [0], "client_cpus": [1], "kernel": "x"},
                "smoke": False, "duration_s": 5, "repeat": 3, "backends": ["thread", "pool", "prefork"],
                "peers": ["nginx"], "skipped_backends": {},
                "scenarios": [{"name": s.name, "about": s.about, "connections": s.connections,
                               "method": s.method, "path": s.path, "body": s.body, "mode": s.mode}
                              for s in matrix.SCENARIOS],
                "runs": runs}

    def test_a_skip_names_the_scenarios_it_hit(self):
        data = self.data()
        data["runs"].append({"backend": "nginx", "kind": "peer", "scenario": "c10k", "rep": 0,
                             "connections": 10000, "status": "skipped",
                             "problems": ["skipped: descriptors"]})
        for sc in ("plaintext", "c10k"):
            data["runs"].append({"backend": "go", "kind": "peer", "scenario": sc, "rep": 0,
                                 "connections": 64, "status": "skipped",
                                 "problems": ["skipped: `go` is not installed"]})
        text = report.render(data, runner.aggregate(data["runs"]), "charts")
        self.assertIn("- nginx (c10k): skipped: descriptors", text)
        self.assertIn("- go (every scenario): skipped: `go` is not installed", text)

    def test_aggregate_median_min_max(self):
        s = runner.aggregate(self.data()["runs"])
        e = s["plaintext/thread"]
        self.assertEqual(e["rps"], {"median": 10100, "min": 10000, "max": 10200})
        self.assertEqual(e["good_runs"], 3)
        self.assertEqual(s["plaintext/prefork"]["good_runs"], 0)

    def test_error_runs_are_not_figures(self):
        runs = [fake_record("thread", "plaintext", 0, 100, 1.0, status="error"),
                fake_record("thread", "plaintext", 1, 200, 1.0, status="errors"),
                fake_record("thread", "plaintext", 2, 300, 1.0)]
        s = runner.aggregate(runs)
        self.assertEqual(s["plaintext/thread"]["rps"]["median"], 300)
        self.assertEqual(s["plaintext/thread"]["marked_runs"], 1)
        self.assertFalse(s["plaintext/thread"]["marked"])

    def test_runs_with_errors_are_marked_not_headline(self):
        # A backend whose every run had timeouts: its figures are shown marked (⚠), never in
        # the overview's headline, the ratios or the "leads with" sentence.
        data = self.data()
        data["runs"] = [r for r in data["runs"] if r["backend"] != "prefork"]
        for rep in range(3):
            data["runs"].append(fake_record("prefork", "c10k", rep, 90000, 1.0, status="errors"))
        summary = runner.aggregate(data["runs"])
        self.assertTrue(summary["c10k/prefork"]["marked"])
        self.assertEqual(summary["c10k/prefork"]["good_runs"], 0)
        text = report.render(data, summary, "charts")
        c10k = text[text.index("## c10k"):text.index("## delay")]
        self.assertIn("⚠ prefork", c10k)
        self.assertNotIn("prefork leads", c10k)
        self.assertIn("pool leads", c10k)
        overview = text[text.index("## Overview"):text.index("## plaintext")]
        self.assertNotIn("90,000", overview)
        self.assertIn("⚠ errors", overview)

    def test_thread_timeouts_at_c10k_are_explained_with_the_runs_figures(self):
        data = self.data()
        data["runs"] = [r for r in data["runs"]
                        if not (r["backend"] == "thread" and r["scenario"] == "c10k")]
        for rep in range(3):
            rec = fake_record("thread", "c10k", rep, 40000, 1.0, status="errors")
            rec["wrk"]["latency_us"]["50"] = 150_000
            data["runs"].append(rec)
        text = report.render(data, runner.aggregate(data["runs"]), "charts")
        c10k = text[text.index("## c10k"):text.index("## delay")]
        self.assertIn("thread's timeouts are the model's own cost", c10k)
        self.assertIn("about 6,000 requests wait for the CPU", c10k)
        plain = text[text.index("## plaintext"):text.index("## echo-4k")]
        self.assertNotIn("model's own cost", plain)

    def test_render(self):
        data = self.data()
        text = report.render(data, runner.aggregate(data["runs"]), "charts")
        for sc in matrix.SCENARIOS:
            self.assertIn(f"## {sc.name}", text)
        self.assertIn("÷ nginx", text)
        self.assertIn("pool leads with 25,", text)   # 20,100 / 0.8 per core
        self.assertIn("start-failed", text)
        self.assertNotIn("TODO", text)
        self.assertNotIn("None", text)

    def test_lessons_section(self):
        data = self.data()
        for rep in range(3):
            for label, base, w, cores in (("py-mp×1", "py-mp", 1, 1.0), ("py-mp×2", "py-mp", 2, 1.9),
                                          ("py-thread", "py-thread", None, 1.0)):
                r = fake_record(label, "gil", rep, 500 * cores, cores)
                r.update(base=base, workers=w, kind="peer")
                data["runs"].append(r)
        data["scenarios"].append({"name": "gil", "about": "x", "connections": 16, "group": "lessons",
                                  "kind": "wrk"})
        text = report.render(data, runner.aggregate(data["runs"]), "charts")
        section = text[text.index("## The article's lessons, measured"):text.index("### gil")]
        self.assertEqual(section.count("\n| ") - 1, 8)  # one row per lesson
        self.assertIn("py-mp×2 1.90 cores", section)
        self.assertIn("Two worker processes did 1.9×", section)
        self.assertIn("Not measured in this run", section)  # no uring/fiber/idle here
        self.assertNotIn("None", section)

    def test_metrics_cost_beside_plaintext(self):
        # Per gearbox backend: plaintext's median req/s per core, the metrics scenario's and
        # their ratio; a side with no correct run is "not measured", never a number.
        data = self.data()
        data["runs"] = [r for r in data["runs"] if not (r["scenario"] == "metrics"
                                                        and r["backend"] in ("thread", "pool"))]
        for rep in range(3):
            r = fake_record("thread", "metrics", rep, 9090 + rep * 100, 1.0)
            r["metrics_scrapes"] = 5
            data["runs"].append(r)
        data["runs"].append(fake_record("pool", "metrics", 0, 20000, 1.0, status="error"))
        text = report.render(data, runner.aggregate(data["runs"]), "charts")
        section = text[text.index("### What the metrics cost"):text.index("## echo-4k")]
        self.assertIn("| thread | 10,100 (10,000–10,200) | 9,190 (9,090–9,290) | 0.91× (-9.0 %) "
                      "| 5 |", section)  # ranges apart: a cost, not noise
        self.assertIn("| pool | 25,125 (25,000–25,250) | not measured (error) | not measured | - |",
                      section)
        self.assertIn("| prefork | not measured (start-failed) | not measured | not measured | - |",
                      section)
        self.assertNotIn("nginx", section)  # gearbox's own counters: no peer row
        for rep in range(3):  # fiber: ranges overlap, so the gap is called noise
            data["runs"].append(fake_record("fiber", "plaintext", rep, 10000 + rep * 300, 1.0))
            data["runs"].append(fake_record("fiber", "metrics", rep, 9800 + rep * 300, 1.0))
        text = report.render(data, runner.aggregate(data["runs"]), "charts")
        self.assertIn("| fiber | 10,300 (10,000–10,600) | 10,100 (9,800–10,400) | 0.98× (-1.9 %), "
                      "inside the spread |", text)
        self.assertIn("with ÷ without", section)

    def test_bottleneck(self):
        self.assertEqual(runner.bottleneck(0.95, 1, 0.3, 1), "server")
        self.assertEqual(runner.bottleneck(0.5, 1, 0.99, 1), "client")
        self.assertEqual(runner.bottleneck(0.2, 1, 0.2, 1), "neither")
        self.assertEqual(runner.bottleneck(1.9, 2, 0.9, 1), "both")

    def test_charts(self):
        # No skip: make test runs this with Debian's /usr/bin/python3 and python3-matplotlib;
        # without matplotlib it fails.
        from benchlib import charts
        data = self.data()
        # the lessons' charts too: gil, multi, idle, openloop
        for name, kind in (("gil", "wrk"), ("multi-plaintext", "wrk"), ("multi-mixed", "wrk"),
                           ("idle-1k", "idle"), ("open", "open")):
            data["scenarios"].append({"name": name, "about": "x", "connections": 64,
                                      "group": "lessons", "kind": kind})
        for label, base, w in (("pool×1", "pool", 1), ("pool×2", "pool", 2)):
            for name in ("gil", "multi-plaintext", "multi-mixed"):
                r = fake_record(label, name, 0, 1000 * w, 1.0 * w)
                r.update(base=base, workers=w)
                data["runs"].append(r)
        data["runs"].append(fake_record("pool", "idle-1k", 0, 100, 0.1))
        for rate in (2000, 5000, 10000):
            r = fake_record(f"pool@{rate // 1000}k", "open", 0, rate, 0.5)
            r.update(base="pool", rate=rate)
            data["runs"].append(r)
        with tempfile.TemporaryDirectory() as d:
            files = charts.render(data, runner.aggregate(data["runs"]), Path(d))
            self.assertEqual({f.name for f in files},
                             {"rps_per_core.png", "latency.png", "memory.png", "gil.png",
                              "multi.png", "idle.png", "openloop.png"})
            for f in files:
                self.assertGreater(f.stat().st_size, 5000)


@contextlib.contextmanager
def stand_in(backend: str):
    """fake_gearbox.py serving as `backend` on an ephemeral port: yields (process, port)."""
    proc = subprocess.Popen([sys.executable, str(HERE / "fake_gearbox.py"), "--backend", backend,
                             "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    try:
        yield proc, int(proc.stderr.readline().split("listening on 127.0.0.1:")[1].split()[0])
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


class HeldConnections(unittest.TestCase):
    def test_counts_accepted_not_offered(self):
        # A server process that accepts 3 of the 10 connections offered: the other 7 are
        # established in the kernel (listen backlog) but held by nobody.
        code = ("import socket, sys, time\n"
                "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(64)\n"
                "print(s.getsockname()[1], flush=True)\n"
                "held = [s.accept()[0] for _ in range(3)]\n"
                "print('accepted', flush=True)\n"
                "time.sleep(30)\n")
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        socks = []
        try:
            port = int(proc.stdout.readline())
            socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
            self.assertEqual(proc.stdout.readline().strip(), "accepted")
            self.assertEqual(procstat.held_connections(proc.pid, port), 3)
            sampler = procstat.TreeSampler(proc.pid, port=port)
            sampler.baseline()
            self.assertEqual(sampler.totals()["peak_held_connections"], 3)
        finally:
            for c in socks:
                c.close()
            proc.kill()
            proc.wait()
            proc.stdout.close()


class CheckResponses(unittest.TestCase):
    def test_catches_short_echo_and_accepts_a_right_one(self):
        with stand_in("shorty") as (_, port):
            self.assertEqual(servers.check_responses(port, "GET", "/plaintext", 0,
                                                     matrix.PLAINTEXT), "")
            wrong = servers.check_responses(port, "POST", "/echo", 4096, matrix.ECHO)
            self.assertIn("request 1", wrong)
            self.assertIn("IncompleteRead", wrong)
            self.assertIn("differing from byte", servers.check_responses(
                port, "GET", "/plaintext", 0, "Hello, World?"))


class Targets(unittest.TestCase):
    def plan(self, **kw):
        info = matrix.parse_help(GEARBOX_HELP)
        args = dict(binary="x", backends=info.backends, scenarios=list(matrix.SCENARIOS),
                    peers=list(matrix.PEERS), duration=5, repeat=1, smoke=False,
                    server_cpus=[0], client_cpus=[1], server_args=[], info=info,
                    out=Path("/tmp"))
        args.update(kw)
        return runner.Plan(**args)

    def labels(self, plan, name):
        return [t.label for t in runner.targets_for(plan, matrix.scenario_by_name(name))]

    def test_variants_from_help_flags(self):
        plan = self.plan()
        gil = self.labels(plan, "gil")
        # per-connection models once; a backend with its own thread flag at 1 and 2; peers with
        # a worker count likewise, the others (a thread per connection, one loop) once
        for want in ("thread", "prefork", "pool×1", "pool×2", "fiber×1", "fiber×2", "go×1",
                     "go×2", "py-mp×2", "py-pool×1", "py-thread", "py-asyncio"):
            self.assertIn(want, gil)
        self.assertNotIn("thread×1", gil)
        self.assertEqual(self.labels(plan, "multi-plaintext"),
                         ["pool×1", "pool×2", "fiber×1", "fiber×2"])
        self.assertEqual(len(self.labels(plan, "open")),
                         (len(plan.backends) + 2) * len(matrix.OPEN_RATES))

    def test_the_proxy_runs_twice_more_than_repeat_and_the_once_scenarios_once(self):
        def runs(plan, name):
            order, planned = runner.schedule(plan)
            self.assertEqual(len(order), len(planned))
            reps = [rep for rep, sc, t in order if sc.name == name and t.label == "nginx"]
            self.assertEqual(reps, sorted(reps))
            return len(reps)
        self.assertEqual(runs(self.plan(repeat=3), "proxy"), 5)
        self.assertEqual(runs(self.plan(repeat=3), "plaintext"), 3)
        self.assertEqual(runs(self.plan(repeat=3), "idle-1k"), 1)
        self.assertEqual(runs(self.plan(repeat=1), "proxy"), 1)
        data = {"repeat": 3, "scenarios": [{"name": "proxy"}, {"name": "plaintext"}]}
        self.assertIn("proxy 5 ×", report.more_runs(data))
        self.assertEqual(report.more_runs({"repeat": 1, "scenarios": [{"name": "proxy"}]}), "")

    def test_smoke_and_quick_are_smaller(self):
        smoke = self.plan(smoke=True)
        self.assertEqual(self.labels(smoke, "idle-10k"), [])
        self.assertEqual(self.labels(smoke, "gil"), ["thread", "prefork", "pool×2", "fiber×2"])
        self.assertNotIn("go", self.labels(smoke, "c10k"))
        self.assertIn("py-asyncio", self.labels(smoke, "plaintext"))
        every = {t.base for sc in matrix.SCENARIOS for t in runner.targets_for(smoke, sc)}
        self.assertTrue(set(matrix.PEERS) <= every, "the smoke starts every peer")
        quick = self.plan(quick=True)
        self.assertEqual(len(self.labels(quick, "open")),
                         (len(quick.backends) + 2) * len(matrix.OPEN_RATES[::2]))
        self.assertEqual(quick.seconds(matrix.scenario_by_name("c10k")), 7.5)

    def test_metrics_scenario_targets(self):
        # Every gearbox backend, no peer; the smoke runs it on the first backend only.
        metrics = matrix.scenario_by_name("metrics")
        self.assertTrue(metrics.scrape_metrics)
        self.assertEqual((metrics.method, metrics.path, metrics.connections),
                         ("GET", "/plaintext", matrix.scenario_by_name("plaintext").connections))
        self.assertEqual(self.labels(self.plan(), "metrics"), self.plan().backends)
        self.assertEqual(self.labels(self.plan(smoke=True), "metrics"), ["thread"])

    def test_metrics_needs_admin_listen_in_help(self):
        # GEARBOX_HELP lists no --admin-listen: the run is skipped before anything starts.
        plan = self.plan(backends=["thread"])
        with self.assertRaises(servers.StartError) as e:
            runner.start_target(plan, runner.Target("thread", "thread"),
                                matrix.scenario_by_name("metrics"), runner.Upstream(plan),
                                Path("/nonexistent/log"), [])
        self.assertIn("skipped", str(e.exception))
        self.assertIn("--admin-listen", str(e.exception))

    def test_all_cpus_scenarios_share_the_cpus(self):
        plan = self.plan()
        self.assertEqual(runner.cpus_for(plan, matrix.scenario_by_name("gil")), ([0, 1], [0, 1]))
        self.assertEqual(runner.cpus_for(plan, matrix.scenario_by_name("plaintext")), ([0], [1]))
        self.assertIn("--threads=2", runner.gearbox_flags(plan, "pool",
                                                          matrix.scenario_by_name("gil"), 2))
        self.assertIn("--workers=1", runner.gearbox_flags(plan, "uring",
                                                          matrix.scenario_by_name("plaintext")))


class PythonPeers(unittest.TestCase):
    def test_every_python_peer_answers_every_endpoint_right(self):
        checks = (("GET", "/plaintext", 0, matrix.PLAINTEXT), ("POST", "/echo", 4096, matrix.ECHO),
                  ("POST", "/echo", 262144, matrix.ECHO), ("GET", "/delay/5", 0, matrix.DONE),
                  ("GET", "/cpu/2", 0, matrix.DONE))
        with tempfile.TemporaryDirectory() as d:
            for name in matrix.PY_PEERS:
                try:
                    server = servers.start_python_peer(name, None, Path(d) / f"{name}.log",
                                                       workers=2 if name in ("py-mp", "py-pool") else None)
                except servers.StartError as e:
                    self.assertEqual(name, "py-uvloop", str(e))  # only uvloop may be missing
                    self.assertIn("skipped", str(e))
                    continue
                try:
                    for method, path, body, expect in checks:
                        self.assertEqual(servers.check_responses(server.port, method, path, body,
                                                                 expect), "", name)
                finally:
                    servers.stop(server)


class IdleLoad(unittest.TestCase):
    def test_holds_what_is_answered_and_counts_the_rest(self):
        from benchlib import idle_load
        with stand_in("capped") as (proc, port):
            sampler = procstat.TreeSampler(proc.pid, port=port)
            sampler.baseline()
            marks = []
            f = idle_load.hold(port, "/plaintext", 20, matrix.PLAINTEXT, sampler,
                               lambda: marks.append(1), settle_s=0.2, timeout_s=1.0)
            self.assertEqual(f["correct"], 8)
            self.assertEqual(f["errors"]["timeout"], 12)
            self.assertEqual(sampler.totals()["peak_held_connections"], 8)
            self.assertEqual(len(marks), 2)


@unittest.skipUnless(shutil.which("go"), "go is not installed (make bench installs golang-go)")
class OpenLoop(unittest.TestCase):
    def test_latency_from_the_intended_send_time(self):
        # The stand-in answers /delay/50 one request at a time per connection; offered 40/s on
        # 1 connection (20/s capacity), requests queue: latency from their due time grows far
        # past the 50 ms service time, which a closed loop would never show.
        from benchlib import openloop
        with stand_in("thread") as (_, port), tempfile.TemporaryDirectory() as d:
            f = openloop.run(Path(d), port, "/delay/50", matrix.DONE, 40, 1, 2.0, [],
                             lambda: None)
        self.assertEqual(f["sent"], 80)
        self.assertGreater(f["correct"], 20)
        self.assertGreater(f["latency_us"]["99"], 500_000)
        self.assertEqual(f["bad_body"], 0)


class Scrapes(unittest.TestCase):
    def test_requests_total_sums_samples_only(self):
        text = ("# HELP gearbox_http_requests_total Responses sent\n"
                "# TYPE gearbox_http_requests_total counter\n"
                'gearbox_http_requests_total{method="GET",code="2xx"} 12\n'
                'gearbox_http_requests_total{method="GET",code="5xx"} 3\n'
                "gearbox_http_requests_total_created 99\n")
        self.assertEqual(scrape.requests_total(text), 15)
        self.assertIsNone(scrape.requests_total("# TYPE gearbox_http_requests_total counter\n"))

    def test_one_a_second_every_one_right(self):
        ok = {"ok": True, "problem": "", "requests": 1, "s": 0.01}
        bad = {"ok": False, "problem": "status 500", "requests": None, "s": 0.01}
        self.assertEqual(scrape.problems([ok] * 3, 4.0), [])
        self.assertIn("only 2 /metrics scrapes", scrape.problems([ok] * 2, 4.0)[0])
        self.assertIn("only 3", scrape.problems([ok] * 3, 4.5)[0])   # fewer than 4.5 - 1
        self.assertIn("1 of 4 /metrics scrapes failed (first: status 500)",
                      scrape.problems([ok, ok, bad, ok], 4.0)[0])
        self.assertIn("only 0", scrape.problems([], 1.0)[0])          # never none, even at 1 s


def core_bench_doc(ns: dict[str, list[float]], drop: str = "") -> dict:
    """Google Benchmark JSON as gearbox_core_bench prints it: one entry per repetition, then
    the aggregates (which the parser must ignore)."""
    out = []
    for family in list(corebench.FAMILIES) + list(corebench.IDLE_FAMILIES):
        for arg in corebench.ARGS:
            name = f"{family}/{arg}"
            if name == drop:
                continue
            values = ns.get(name, [100.0])
            for v in values:
                e = {"name": name, "run_name": name, "run_type": "iteration"}
                if family in corebench.FAMILIES:
                    e.update({"time/req": v * 1e-9, "allocs/req": 0.0, "writes/req": 1.0})
                else:
                    e["bytes/idle_conn"] = v
                out.append(e)
            out.append(dict(out[-1], name=name + "_mean", run_type="aggregate",
                            aggregate_name="mean", **{"time/req": 1.0, "bytes/idle_conn": 1e9}))
    return {"context": {"library_build_type": "release", "num_cpus": 2}, "benchmarks": out}


class CoreBench(unittest.TestCase):
    def test_parse_takes_median_min_max_of_the_repetitions(self):
        doc = core_bench_doc({"BM_PlaintextKeepAlive/0": [300, 250, 280],
                              "BM_IdleConnectionBytesEcho/1": [1340.0]})
        rows = corebench.parse(doc)["rows"]
        ns = rows["BM_PlaintextKeepAlive/0"]["ns_per_req"]
        self.assertAlmostEqual(ns["median"], 280)
        self.assertAlmostEqual(ns["min"], 250)
        self.assertAlmostEqual(ns["max"], 300)
        self.assertEqual(ns["n"], 3)   # the _mean aggregate is not a repetition
        self.assertEqual(rows["BM_IdleConnectionBytesEcho/1"]["bytes_per_idle_conn"], 1340.0)

    def stand_in(self, tmp: str, body: str) -> Path:
        exe = Path(tmp) / "gearbox_core_bench"
        exe.write_text("#!/bin/sh\n" + body)
        exe.chmod(0o755)
        return exe

    def test_run_reads_the_binary_and_says_what_went_wrong(self):
        with tempfile.TemporaryDirectory() as tmp:
            doc = Path(tmp) / "doc.json"
            doc.write_text(json.dumps(core_bench_doc({"BM_ProxiedGet/1": [1160.0]})))
            ok = corebench.run(self.stand_in(tmp, f"cat {doc}\n"), [], 1, 0.01)
            self.assertEqual(ok["status"], "ok", ok.get("problem"))
            self.assertAlmostEqual(ok["rows"]["BM_ProxiedGet/1"]["ns_per_req"]["median"], 1160.0)
            doc.write_text(json.dumps(core_bench_doc({}, drop="BM_PlaintextPipelined16/1")))
            short = corebench.run(self.stand_in(tmp, f"cat {doc}\n"), [], 1, 0.01)
            self.assertEqual(short["status"], "failed")
            self.assertIn("BM_PlaintextPipelined16/1", short["problem"])
            crash = corebench.run(self.stand_in(tmp, "echo boom >&2; exit 3\n"), [], 1, 0.01)
            self.assertEqual(crash["status"], "failed")
            self.assertIn("exit status 3: boom", crash["problem"])
            none = corebench.run(Path(tmp) / "absent", [], 1, 0.01)
            self.assertEqual(none["status"], "not-built")

    def test_the_report_carries_ns_per_request(self):
        doc = core_bench_doc({"BM_PlaintextPipelined16/1": [315.4, 310.0, 330.0],
                              "BM_IdleConnectionBytesProxy/1": [2600.0]})
        core = dict(corebench.parse(doc), status="ok", cpus=[0], repetitions=3, min_time_s=0.5)
        data = Report().data()
        data["core_bench"] = core
        text = report.render(data, runner.aggregate(data["runs"]), "charts")
        self.assertIn("## The core alone: ns per request, without I/O", text)
        self.assertIn("| `GET /plaintext` pipelined 16 deep, 16 requests per read | handed over "
                      "| **315 (310–330)** | 0.00 | 1 |", text)
        self.assertIn("| proxy | 100 B | 2,600 B |", text)
        failed = Report().data()
        failed["core_bench"] = {"status": "failed", "problem": "exit status 3: boom"}
        self.assertIn("Not measured: exit status 3: boom.",
                      report.render(failed, runner.aggregate(failed["runs"]), "charts"))
        self.assertNotIn("The core alone", report.render(
            Report().data(), runner.aggregate(failed["runs"]), "charts"))

    @unittest.skipUnless(os.access(ROOT.parent / "build" / "gearbox_core_bench", os.X_OK),
                         "build/gearbox_core_bench is not built")
    def test_the_real_micro_benchmark(self):
        core = corebench.run(ROOT.parent / "build" / "gearbox_core_bench", [], 1, 0.01)
        self.assertEqual(core["status"], "ok", core.get("problem"))
        for name, row in core["rows"].items():
            if "ns_per_req" in row:
                self.assertGreater(row["ns_per_req"]["median"], 1.0, name)
                self.assertLess(row["ns_per_req"]["median"], 1e6, name)
        # A keep-alive GET answered from the lent span allocates nothing.
        self.assertEqual(core["rows"]["BM_PlaintextKeepAlive/0"]["allocs_per_req"], 0)


class NginxConfig(unittest.TestCase):
    def test_proxy_mode_proxies_every_path(self):
        # The old configuration answered /plaintext with `return 200` ahead of proxy_pass.
        conf = servers.nginx_config("proxy", Path("/tmp/x"), 8080, upstream_port=9090)
        self.assertNotIn("return", conf)
        self.assertNotIn("location =", conf)
        self.assertIn("location / {", conf)
        self.assertIn("proxy_pass http://gearbox_upstream;", conf)
        self.assertIn("server 127.0.0.1:9090;", conf)
        # Like for like: gearbox gets the pool size of nginx's upstream block (its default, 32,
        # is below the scenario's 64 connections and made it reconnect for many requests).
        self.assertIn(f"keepalive {matrix.PROXY_KEEPALIVE};", conf)
        self.assertIn(f"--proxy-keepalive={matrix.PROXY_KEEPALIVE}",
                      matrix.scenario_by_name("proxy").server_flags)
        up = servers.nginx_config("upstream", Path("/tmp/x"), 8080, status_port=8081)
        self.assertIn("stub_status", up)

    def test_body_echo_loads_the_echo_module_only_where_asked(self):
        plain = servers.nginx_config("echo", Path("/tmp/x"), 8080)
        self.assertNotIn("load_module", plain)  # plaintext & co run as before
        self.assertNotIn("/echo", plain)
        conf = servers.nginx_config("echo", Path("/tmp/x"), 8080,
                                    echo_module="/m/ngx_http_echo_module.so")
        # a main-context directive: before the events and http blocks
        self.assertTrue(conf.split("\n")[1].startswith("load_module /m/ngx_http_echo_module.so;"))
        self.assertIn("location = /echo {", conf)
        self.assertIn("echo_read_request_body;", conf)
        self.assertIn("echo_request_body;", conf)
        self.assertIn('location = /plaintext { return 200 "Hello, World!"; }', conf)
        # the largest echo body stays in memory (else nginx writes it to a temp file)
        largest = max(sc.body for sc in matrix.SCENARIOS if sc.expect == matrix.ECHO)
        self.assertGreaterEqual(1 << 20, largest)
        self.assertIn("client_body_buffer_size 1m;", conf)
        self.assertIn("client_max_body_size 1m;", conf)
        with self.assertRaises(ValueError):
            servers.nginx_config("proxy", Path("/tmp/x"), 8080, upstream_port=1, echo_module="/m")
        for name in ("echo-4k", "echo-256k"):
            self.assertIn("nginx", matrix.scenario_by_name(name).peers)

    def test_body_echo_without_the_module_is_a_skip_for_that_scenario_only(self):
        from unittest import mock
        if servers.nginx_binary() is None:
            self.skipTest("nginx is not installed")
        with tempfile.TemporaryDirectory() as d, \
                mock.patch.object(servers, "nginx_echo_module", lambda: None):
            with self.assertRaises(servers.StartError) as e:
                servers.start_nginx("echo", None, Path(d) / "nginx.log", body_echo=True)
        msg = str(e.exception)
        self.assertTrue(msg.startswith("skipped: nginx's echo module"), msg)
        self.assertIn("libnginx-mod-http-echo", msg)
        rec = {"status": "skipped", "problems": [msg]}
        self.assertFalse(runner.peer_missing(rec))  # nginx still runs the other scenarios

    @unittest.skipUnless(servers.nginx_binary() and servers.nginx_echo_module(),
                         "nginx or its echo module (libnginx-mod-http-echo) is not installed")
    def test_echoes_4k_and_256k_byte_for_byte(self):
        with tempfile.TemporaryDirectory() as d:
            server = servers.start_nginx("echo", None, Path(d) / "nginx.log", workers=1,
                                         body_echo=True)
            try:
                for sc in ("echo-4k", "echo-256k"):
                    body = matrix.scenario_by_name(sc).body
                    self.assertEqual(servers.check_responses(server.port, "POST", "/echo", body,
                                                             matrix.ECHO, tries=3), "", sc)
                # the check does look at nginx's bytes: plaintext is not an echo of 4 KiB
                wrong = servers.check_responses(server.port, "POST", "/plaintext", 4096,
                                                matrix.ECHO, tries=1)
                self.assertNotEqual(wrong, "")
            finally:
                servers.stop(server)


class HaproxyPeer(unittest.TestCase):
    def test_plaintext_config_returns_the_body_itself(self):
        conf = servers.haproxy_config("echo", 8080, threads=2, maxconn=9950)
        self.assertIn('http-request return status 200 content-type text/plain string '
                      f'"{matrix.PLAINTEXT}" if {{ path /plaintext }}', conf)
        self.assertIn("bind 127.0.0.1:8080 backlog 4096", conf)
        self.assertIn("nbthread 2\n", conf)
        self.assertEqual(conf.count("maxconn 9950\n"), 2)  # global and the frontend's
        for line in ("option http-keep-alive", "timeout client 60s", "timeout server 60s"):
            self.assertIn(line, conf)
        self.assertNotIn("backend", conf)  # answered by HAProxy itself
        self.assertTrue(conf.endswith("\n"))

    def test_proxy_config_sends_every_path_upstream_over_reused_connections(self):
        conf = servers.haproxy_config("proxy", 8080, upstream_port=9090, threads=1)
        self.assertNotIn("return", conf)  # nothing answered without the upstream
        self.assertIn("default_backend gearbox_upstream", conf)
        self.assertIn(f"server upstream 127.0.0.1:9090 pool-max-conn {matrix.PROXY_KEEPALIVE}\n",
                      conf)
        self.assertIn("option http-keep-alive", conf)
        self.assertRegex(conf, r"\n  http-reuse (always|safe)\n")
        self.assertIn("nbthread 1\n", conf)
        self.assertIn("haproxy", matrix.scenario_by_name("proxy").peers)

    def test_maxconn_fits_two_descriptors_per_connection(self):
        # HAProxy refuses to start when maxconn needs more descriptors than the limit allows.
        self.assertEqual(servers.haproxy_maxconn(20000), 9950)
        self.assertEqual(servers.haproxy_maxconn(1 << 20), servers.HAPROXY_MAXCONN)
        from unittest import mock
        with self.assertRaises(servers.StartError) as e, \
                mock.patch.object(servers, "haproxy_binary", return_value="/nonexistent/haproxy"):
            servers.start_haproxy("echo", None, Path("/nonexistent/log"),
                                  connections=servers.haproxy_maxconn(servers.fd_hard_limit()) + 1)
        self.assertTrue(str(e.exception).startswith("skipped: "), str(e.exception))
        self.assertIn("ulimit -n", str(e.exception))

    def test_skipped_with_a_message_when_not_installed(self):
        import run
        from unittest import mock
        info = matrix.parse_help(GEARBOX_HELP)
        with tempfile.TemporaryDirectory() as d, \
                mock.patch.object(servers, "haproxy_binary", return_value=None):
            plan = runner.Plan(binary="x", backends=[], scenarios=[], peers=["haproxy"],
                               duration=1, repeat=1, smoke=True, server_cpus=[0],
                               client_cpus=[1], server_args=[], info=info, out=Path(d))
            rec = runner.one_run(plan, runner.Target("haproxy", "haproxy"),
                                 matrix.scenario_by_name("plaintext"), 0, runner.Upstream(plan))
        self.assertEqual(rec["status"], "skipped")
        self.assertIn("`haproxy` is not installed (Debian package haproxy",
                      " ".join(rec["problems"]))
        ok = dict(rec, backend="thread", status="ok")
        self.assertEqual(run.smoke_failures([rec, ok], ["thread"]), [])  # not a smoke failure

    def test_a_skip_for_one_scenario_does_not_skip_the_peer_elsewhere(self):
        # haproxy cannot hold c10k under this descriptor limit, but must still run the proxy
        # scenario after it; a missing program skips the peer everywhere.
        from unittest import mock
        info = matrix.parse_help(GEARBOX_HELP)
        scenarios = [matrix.scenario_by_name("c10k"), matrix.scenario_by_name("proxy")]
        calls = []

        def fake_run(plan, t, sc, rep, upstream):
            calls.append((t.base, sc.name))
            rec = {"backend": t.label, "base": t.base, "kind": "peer", "scenario": sc.name,
                   "rep": rep, "status": "ok", "problems": []}
            if t.base == "go":
                rec.update(status="skipped", problems=["skipped: `go` is not installed"])
            elif sc.name == "c10k":
                rec.update(status="skipped",
                           problems=["skipped: haproxy reserves 2 descriptors per connection"])
            return rec

        with tempfile.TemporaryDirectory() as d, mock.patch.object(runner, "one_run", fake_run), \
                mock.patch.object(runner.Upstream, "stop", lambda self: None):
            plan = runner.Plan(binary="x", backends=[], scenarios=scenarios,
                               peers=["haproxy", "go"], duration=1, repeat=1, smoke=False,
                               server_cpus=[0], client_cpus=[1], server_args=[], info=info,
                               out=Path(d))
            recs = runner.run_matrix(plan, say=lambda *_: None)
        self.assertIn(("haproxy", "proxy"), calls)
        self.assertEqual([r["status"] for r in recs if r.get("scenario") == "proxy"
                          and r.get("base") == "haproxy"], ["ok"])
        self.assertEqual([c for c in calls if c[0] == "go"], [("go", "c10k")])  # then skipped

    @unittest.skipUnless(servers.haproxy_binary(), "haproxy is not installed")
    def test_answers_byte_for_byte_and_stops_cleanly(self):
        with tempfile.TemporaryDirectory() as d:
            server = servers.start_haproxy("echo", None, Path(d) / "haproxy.log", threads=1)
            try:
                self.assertEqual(servers.check_responses(server.port, "GET", "/plaintext", 0,
                                                         matrix.PLAINTEXT, tries=3), "")
            finally:
                code, problem = servers.stop(server)
            self.assertEqual((code, problem), (0, ""))  # SIGUSR1: its soft stop, status 0
            self.assertFalse(os.path.exists(server.cleanup[0]))


def runs_of(res: dict, backend: str, scenario: str | None = None) -> list[dict]:
    return [x for x in res["runs"] if x["backend"] == backend
            and (scenario is None or x["scenario"] == scenario)]


@unittest.skipUnless(shutil.which("wrk"), "wrk is not installed")
class RunnerAgainstStandIn(unittest.TestCase):
    """The whole runner (run.py) against fake_gearbox.py: one stand-in backend per defect."""

    def run_py(self, *args):
        with tempfile.TemporaryDirectory() as out:
            if "--smoke" in args and "--duration" not in args:
                args = args + ("--duration", "2")  # a Python stand-in on a busy machine
            r = subprocess.run([sys.executable, str(ROOT / "run.py"), "--binary",
                                str(HERE / "fake_gearbox.py"), "--out", out, "--no-charts", *args],
                               capture_output=True, text=True, timeout=180)
            results = json.loads((Path(out) / "results.json").read_text()) \
                if (Path(out) / "results.json").exists() else None
            return r, results

    def test_smoke_passes_and_nginx_really_proxies(self):
        # haproxy runs where it is installed and is skipped, not failed, where not (CI).
        r, res = self.run_py("--smoke", "--peers", "nginx,haproxy", "--backends", "thread,forky",
                             "--scenarios", "plaintext,echo-4k,proxy")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        hx = runs_of(res, "haproxy")
        self.assertEqual([x["scenario"] for x in hx], ["plaintext", "proxy"])
        for x in hx:
            if servers.haproxy_binary():
                self.assertEqual(x["status"], "ok", x["problems"])
                self.assertIn("-db", x["server_argv"])  # in the foreground, stopped by PID
                self.assertEqual(x["wrk"]["correct"], x["wrk"]["requests"])
            else:
                self.assertEqual(x["status"], "skipped")
                self.assertIn("not installed", " ".join(x["problems"]))
        if servers.haproxy_binary():
            # every answer HAProxy gave in proxy mode came from the upstream
            up = runs_of(res, "haproxy", "proxy")[0]
            self.assertGreater(up["wrk"]["requests"], 0)
            self.assertGreaterEqual(up["upstream_served"], up["wrk"]["requests"])
        res["runs"] = [x for x in res["runs"] if x["backend"] != "haproxy"]
        # nginx echoes by its echo module (every answer checked by wrk's script as well), or is
        # skipped in that scenario alone where the module is missing
        ng_echo = runs_of(res, "nginx", "echo-4k")
        self.assertEqual(len(ng_echo), 1)
        if servers.nginx_echo_module() is None:
            self.assertEqual(ng_echo[0]["status"], "skipped")
            res["runs"].remove(ng_echo[0])
        self.assertEqual({x["status"] for x in res["runs"]}, {"ok"})
        forky = runs_of(res, "forky", "plaintext")[0]
        self.assertEqual(forky["server"]["peak_processes"], 2)
        # a backend's own thread/process-count flag, from --help, set to the server CPUs
        self.assertIn("--threads=1", runs_of(res, "thread")[0]["server_argv"])
        self.assertIn("--workers=1", forky["server_argv"])
        for x in res["runs"]:
            self.assertGreater(x["wrk"]["correct"], 0)
            self.assertEqual(x["wrk"]["correct"], x["wrk"]["requests"])
            self.assertGreater(x["server"]["cpu_user_s"] + x["server"]["cpu_sys_s"], 0)
        ng = runs_of(res, "nginx", "proxy")
        self.assertEqual(len(ng), 1)
        # nginx in proxy mode sends every request upstream: the upstream's count covers them
        self.assertGreaterEqual(ng[0]["upstream_served"], ng[0]["wrk"]["requests"])
        self.assertGreater(ng[0]["wrk"]["requests"], 0)

    def test_smoke_fails_on_start_failures_wrong_answers_and_dying(self):
        r, res = self.run_py("--smoke", "--peers", "none", "--backends",
                             "thread,broken,refused,dies,lost,wrongbody,flaky500",
                             "--scenarios", "plaintext")
        self.assertEqual(r.returncode, 1)
        status = {x["backend"]: x["status"] for x in res["runs"]}
        # "Resource temporarily unavailable" in a start failure is a failure, not a skip: only
        # what --help marks unavailable ("lost") is skipped.
        self.assertEqual(status, {"thread": "ok", "broken": "start-failed",
                                  "refused": "start-failed", "dies": "error",
                                  "wrongbody": "errors", "flaky500": "errors"})
        self.assertEqual(list(res["skipped_backends"]), ["lost"])
        for name in ("broken", "refused", "dies", "wrongbody", "flaky500"):
            self.assertIn(f"FAILED {name}", r.stderr)
        wrong = runs_of(res, "wrongbody")[0]
        self.assertGreater(wrong["wrk"]["bad_body"], 0)
        self.assertIn("bad body", " ".join(wrong["problems"]))

    def test_smoke_fails_without_a_correct_run(self):
        r, res = self.run_py("--smoke", "--peers", "none", "--backends", "broken",
                             "--scenarios", "plaintext")
        self.assertEqual(r.returncode, 1)
        self.assertIn("broken: no correct run", r.stderr)

    def test_unlisted_backend_is_an_error_not_a_skip(self):
        r, _ = self.run_py("--smoke", "--backends", "thread,nosuch", "--scenarios", "plaintext")
        self.assertEqual(r.returncode, 2)
        self.assertIn("nosuch", r.stderr)

    def test_errors_marked_and_rps_counts_correct_answers(self):
        # Outside the smoke: the run completes, is marked "errors", and its req/s counts only
        # the 200s (flaky500 answers every 4th request with 500).
        r, res = self.run_py("--duration", "1", "--repeat", "1", "--peers", "none",
                             "--backends", "thread,flaky500", "--scenarios", "plaintext")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        flaky = runs_of(res, "flaky500")[0]
        self.assertEqual(flaky["status"], "errors")
        w, d = flaky["wrk"], flaky["derived"]
        self.assertGreater(w["bad_status"], 0)
        self.assertEqual(w["correct"] + w["bad_status"] + w["bad_body"], w["requests"])
        self.assertAlmostEqual(d["rps"], w["correct"] / d["window_s"], delta=1)
        self.assertLess(d["rps"], 0.85 * w["requests"] / d["window_s"])
        self.assertAlmostEqual(d["rps_per_core"], w["correct"] / flaky["server"]["cpu_s"], delta=1)
        summary = runner.aggregate(res["runs"])
        self.assertTrue(summary["plaintext/flaky500"]["marked"])
        self.assertFalse(summary["plaintext/thread"]["marked"])

    def test_metrics_scenario_scrapes_and_refuses_bad_scrapes(self):
        # metrics starts the server with --admin-listen on a port of its own and scrapes it
        # once a second; a bad /metrics (no counter) or none (nothing listens) is an error,
        # kept out of the report's ratio; plaintext never gets --admin-listen.
        r, res = self.run_py("--duration", "2", "--repeat", "1", "--peers", "none",
                             "--backends", "thread,badmetrics,noadmin",
                             "--scenarios", "plaintext,metrics")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for name in ("thread", "badmetrics", "noadmin"):
            plain, = runs_of(res, name, "plaintext")
            self.assertEqual(plain["status"], "ok", plain["problems"])
            self.assertFalse([a for a in plain["server_argv"] if "admin" in a and a != name])
            run, = runs_of(res, name, "metrics")
            admin = [a for a in run["server_argv"] if a.startswith("--admin-listen=127.0.0.1:")]
            self.assertEqual(len(admin), 1, run["server_argv"])
            self.assertNotEqual(int(admin[0].rsplit(":", 1)[1]), 0)
            self.assertGreaterEqual(run["metrics_scrapes"], run["derived"]["window_s"] - 1)
        good, = runs_of(res, "thread", "metrics")
        self.assertEqual(good["status"], "ok", good["problems"])
        self.assertGreaterEqual(good["metrics_requests_total"], good["wrk"]["correct"])
        bad, = runs_of(res, "badmetrics", "metrics")
        self.assertEqual(bad["status"], "error")
        self.assertIn("without a gearbox_http_requests_total sample", " ".join(bad["problems"]))
        none, = runs_of(res, "noadmin", "metrics")
        self.assertEqual(none["status"], "error")
        self.assertIn("Connection refused", " ".join(none["problems"]))
        summary = runner.aggregate(res["runs"])
        self.assertEqual(summary["metrics/badmetrics"]["good_runs"], 0)
        cost = "\n".join(report.metrics_cost(summary))
        self.assertRegex(cost, r"\| thread \| [\d,]+ \| [\d,]+ \| \d\.\d\d× \([-+][\d.]+ %\) \| \d+ \|")
        self.assertIn("| noadmin | ", cost)
        self.assertRegex(cost, r"\| noadmin \| [\d,]+ \| not measured \(error\) \| not measured \|")

    def test_proxy_that_skips_its_upstream_fails(self):
        r, res = self.run_py("--smoke", "--peers", "none", "--backends", "thread,shortcut",
                             "--scenarios", "proxy")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        ok, cheat = runs_of(res, "thread")[0], runs_of(res, "shortcut")[0]
        self.assertEqual(ok["status"], "ok")
        self.assertGreaterEqual(ok["upstream_served"], ok["wrk"]["requests"])
        self.assertEqual(cheat["status"], "error")
        self.assertIn("answered without its upstream", " ".join(cheat["problems"]))

    def test_short_echo_is_not_measured(self):
        r, res = self.run_py("--smoke", "--peers", "none", "--backends", "thread,shorty",
                             "--scenarios", "echo-4k")
        self.assertEqual(r.returncode, 1)
        bad = runs_of(res, "shorty")[0]
        self.assertEqual(bad["status"], "error")
        self.assertNotIn("wrk", bad)
        self.assertIn("wrong answer before the load", bad["problems"][0])
        self.assertEqual(runs_of(res, "thread")[0]["status"], "ok")

    def test_memory_divided_by_connections_held(self):
        # capped holds 8 of the 64 connections offered, 1 MiB each.
        r, res = self.run_py("--duration", "2", "--repeat", "1", "--peers", "none",
                             "--backends", "capped", "--scenarios", "plaintext")
        run = runs_of(res, "capped")[0]
        self.assertIn("derived", run, r.stdout + r.stderr)
        self.assertEqual(run["derived"]["held_connections"], 8)
        per = run["derived"]["pss_per_conn_bytes"]
        self.assertGreater(per, 0.7 * 2**20)
        self.assertLess(per, 3 * 2**20)

    def test_cpu_and_wall_over_one_window(self):
        # lingers burns 0.5 s of CPU after each of its 64 connections closes, i.e. as soon as
        # wrk exits: none of it may count, and CPU / wall can never exceed the server's CPUs.
        r, res = self.run_py("--smoke", "--peers", "none", "--backends", "lingers",
                             "--scenarios", "plaintext")
        run = runs_of(res, "lingers")[0]
        self.assertIn("derived", run, r.stdout + r.stderr)
        d = run["derived"]
        self.assertAlmostEqual(d["window_s"], run["wrk"]["wall_s"], delta=0.25)
        self.assertLessEqual(d["server_cores"], 1.1 * max(1, len(res["host"]["server_cpus"]) or 2))


if __name__ == "__main__":
    unittest.main()

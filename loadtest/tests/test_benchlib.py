# Tests of the load-test runner's pieces: --help parsing, wrk output, /proc readings, the
# aggregation and the report; and the whole runner against the Python stand-in server.
# Run: python3 -m unittest discover -s loadtest/tests
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from benchlib import matrix, procstat, report, runner, wrk  # noqa: E402

GEARBOX_HELP = """gearbox: an HTTP/1.1 echo server and reverse proxy
Usage:
  gearbox [OPTION...]

  -b, --backend arg          concurrency backend (default: thread)
      --max-connections arg  connections served at once (default 10000)
      --backlog arg          listen(2) backlog (default 511)

Backends:
  thread      a thread per connection, blocking I/O
  prefork     pre-forked worker processes
  uring       io_uring + C++20 coroutines (unavailable here: io_uring is not permitted)
"""


class ParseHelp(unittest.TestCase):
    def test_backends_section(self):
        info = matrix.parse_help(GEARBOX_HELP)
        self.assertEqual(info.source, "help")
        self.assertEqual(info.backends, ["thread", "prefork"])
        self.assertIn("uring", info.unavailable)
        self.assertIn("not permitted", info.unavailable["uring"])
        self.assertIn("--max-connections", info.flags)
        self.assertIn("--backlog", info.flags)

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
        argv = wrk.command("http://127.0.0.1:1/x", "POST", 4096, 2, 8, 1.0, [1])
        if shutil.which("taskset"):
            self.assertEqual(argv[:3], ["taskset", "-c", "1"])
        self.assertEqual(argv[argv.index("-t") + 1], "2")
        self.assertEqual(argv[-3:], ["--", "POST", "4096"])


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
        code = ("import os, time\n"
                "pid = os.fork()\n"
                "end = time.process_time() + 0.4\n"
                "while time.process_time() < end: pass\n"
                "time.sleep(5)\n")
        proc = subprocess.Popen([sys.executable, "-c", code])
        try:
            time.sleep(0.1)
            sampler = procstat.TreeSampler(proc.pid)
            base = sampler.baseline()
            self.assertEqual(base.processes, 2)
            time.sleep(1.5)
            sampler.start()
            time.sleep(0.2)
            sampler.stop()
            t = sampler.totals()
            self.assertGreater(t["cpu_user_s"] + t["cpu_sys_s"], 0.3)
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


def fake_record(backend, scenario, rep, rps, cpu, rss=50 << 20, status="ok"):
    return {
        "backend": backend, "kind": "peer" if backend in runner.PEERS else "gearbox",
        "scenario": scenario, "rep": rep, "connections": 64, "status": status, "problems": [],
        "server": {"cpu_s": cpu, "cpu_user_s": cpu * 0.6, "cpu_sys_s": cpu * 0.4, "ctxt_voluntary": 1000,
                   "ctxt_involuntary": 10, "peak_rss_bytes": rss, "peak_pss_bytes": rss,
                   "idle_pss_bytes": 10 << 20, "peak_threads": 65,
                   "peak_processes": 1, "samples": 10, "idle_rss_bytes": 10 << 20},
        "wrk": {"requests": int(rps), "duration_us": 1_000_000, "errors": {},
                "latency_us": {"50": 500, "90": 900, "99": 2000, "99.9": 5000}},
        "derived": {"rps": rps, "server_cores": cpu, "client_cores": 1.0,
                    "rps_per_core": rps / cpu, "errors": 0,
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

    def test_aggregate_median_min_max(self):
        s = runner.aggregate(self.data()["runs"])
        e = s["plaintext/thread"]
        self.assertEqual(e["rps"], {"median": 10100, "min": 10000, "max": 10200})
        self.assertEqual(e["good_runs"], 3)
        self.assertEqual(s["plaintext/prefork"]["good_runs"], 0)

    def test_error_runs_are_not_figures(self):
        runs = [fake_record("thread", "plaintext", 0, 100, 1.0, status="error"),
                fake_record("thread", "plaintext", 1, 300, 1.0)]
        s = runner.aggregate(runs)
        self.assertEqual(s["plaintext/thread"]["rps"]["median"], 300)

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

    def test_bottleneck(self):
        self.assertEqual(runner.bottleneck(0.95, 1, 0.3, 1), "server")
        self.assertEqual(runner.bottleneck(0.5, 1, 0.99, 1), "client")
        self.assertEqual(runner.bottleneck(0.2, 1, 0.2, 1), "neither")
        self.assertEqual(runner.bottleneck(1.9, 2, 0.9, 1), "both")

    def test_charts(self):
        try:
            from benchlib import charts
        except ImportError:
            self.skipTest("matplotlib not available to this interpreter")
        data = self.data()
        with tempfile.TemporaryDirectory() as d:
            files = charts.render(data, runner.aggregate(data["runs"]), Path(d))
            for f in files:
                self.assertGreater(f.stat().st_size, 5000)


@unittest.skipUnless(shutil.which("wrk"), "wrk is not installed")
class RunnerAgainstStandIn(unittest.TestCase):
    def run_py(self, *args):
        with tempfile.TemporaryDirectory() as out:
            r = subprocess.run([sys.executable, str(ROOT / "run.py"), "--binary",
                                str(HERE / "fake_gearbox.py"), "--out", out, *args],
                               capture_output=True, text=True, timeout=120)
            results = json.loads((Path(out) / "results.json").read_text()) \
                if (Path(out) / "results.json").exists() else None
            return r, results

    def test_smoke_passes(self):
        r, res = self.run_py("--smoke", "--backends", "thread,forky", "--scenarios", "plaintext,proxy")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(len(res["runs"]), 4)
        forky = [x for x in res["runs"] if x["backend"] == "forky"][0]
        self.assertEqual(forky["server"]["peak_processes"], 2)
        for x in res["runs"]:
            self.assertGreater(x["wrk"]["requests"], 0)
            self.assertGreater(x["server"]["cpu_user_s"] + x["server"]["cpu_sys_s"], 0)

    def test_smoke_fails_on_broken_and_dying_backends(self):
        r, res = self.run_py("--smoke", "--backends", "thread,broken,dies,lost", "--scenarios", "plaintext")
        self.assertEqual(r.returncode, 1)
        status = {x["backend"]: x["status"] for x in res["runs"]}
        self.assertEqual(status, {"thread": "ok", "broken": "start-failed", "dies": "error"})
        self.assertIn("lost", res["skipped_backends"])
        self.assertIn("START-FAILED", r.stdout)


if __name__ == "__main__":
    unittest.main()

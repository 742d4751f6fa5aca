#!/usr/bin/env python3
"""The analytics export and report pack under load (`scripts/bench
analytics`): a running service (release build) on the embedded backend, its
scheduled export off.

1. BENCH_ANALYTICS_FILES synthetic 837Ps of 1,000 claims (default 100:
   100,000 claims) are submitted and processed.
2. `clearway export` writes them all (layer A; its daily Tuva snapshot
   off): wall time, CPU time (user + system) and peak RSS of the exporter;
   claim lines per second of wall time and per CPU-second (the "per core"
   figure). Then `clearway export --tuva-snapshot` builds layer B (Tuva's
   medical_claim, eligibility and pharmacy_claim as of today) from those
   files: its own wall, CPU and peak RSS.
3. The report pack (`clearway report NAME` for every report) runs over the
   files with DataFusion, and the same SQL runs in DuckDB (from the test
   venv) over the same files in the same run; each engine's total.
4. Export lag: with `[analytics] export_every_secs = S`, a transaction is
   in Parquet at most S + one run's duration after it is recorded; the
   run's duration at this volume is measured in step 2.

Usage: scripts/bench-analytics.py CLEARWAY_BIN WORKDIR PYTHON
Prints one JSON line and a summary line (stderr).
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request


def post(base, key, body):
    req = urllib.request.Request(f"{base}/v1/transactions", data=body, method="POST")
    req.add_header("Content-Type", "application/edi-x12")
    req.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["transactionId"]


def status(base, key, tid):
    req = urllib.request.Request(f"{base}/v1/transactions/{tid}")
    req.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["status"]


def run_measured(cmd, env=None):
    """Runs a command; returns (stdout, wall seconds, cpu seconds, peak RSS
    bytes) of that process alone (wait4's rusage)."""
    started = time.time()
    with open(os.devnull, "wb") as null:
        out_path = f"/tmp/bench-analytics-{os.getpid()}.out"
        with open(out_path, "wb") as out:
            p = subprocess.Popen(cmd, stdout=out, stderr=null, env={**os.environ, **(env or {})})
            _, code, ru = os.wait4(p.pid, 0)
    wall = time.time() - started
    if code != 0:
        sys.exit(f"{cmd} failed: {code}")
    data = open(out_path, "rb").read()
    os.unlink(out_path)
    return data, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024


def duckdb_sql(sql, root):
    """The report SQL for DuckDB: views over the files, parameters as literals."""
    views = []
    for t in sorted(os.listdir(os.path.join(root, "v1"))):
        path = os.path.join(root, "v1", t)
        if os.path.isdir(path):
            views.append(f"CREATE OR REPLACE VIEW \"{t}\" AS SELECT * FROM read_parquet('{path}/**/*.parquet', hive_partitioning = true);")
    body = (sql.replace("$from", "TIMESTAMPTZ '1970-01-01 00:00:00+00'")
               .replace("$to", "TIMESTAMPTZ '2999-01-01 00:00:00+00'")
               .replace("$partner", "''").replace("$payer", "''")
               .replace("approx_percentile_cont(", "approx_quantile("))
    return views, body


def main():
    clearway, work, python = sys.argv[1], sys.argv[2], sys.argv[3]
    files = int(os.environ.get("BENCH_ANALYTICS_FILES", "100"))
    data = os.path.join(work, "an-data")
    dest = os.path.join(work, "an-parquet")
    key = subprocess.run([clearway, "partners", "add", "--id", "bench", "--data-dir", data],
                         capture_output=True, check=True).stdout.decode().strip()
    env = dict(os.environ, CLEARWAY_LOG="warn", CLEARWAY__ANALYTICS__EXPORT_EVERY_SECS="0")
    serve = subprocess.Popen(
        [clearway, "serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--mllp-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    base = None
    for line in serve.stdout:
        line = line.decode()
        if line.startswith("clearway: http listening on "):
            base = line.split()[4]
        if line.strip() == "clearway: ready":
            break
    try:
        started = time.time()
        ids = []
        for seed in range(files):
            body = subprocess.run([clearway, "gen", "837p", "--count", "1000", "--seed", str(1000 + seed)],
                                  capture_output=True, check=True).stdout
            ids.append(post(base, key, body))
        for tid in ids:
            while status(base, key, tid) not in ("accepted", "rejected", "dead_lettered"):
                time.sleep(0.2)
        processed_secs = time.time() - started
    finally:
        serve.terminate()
        serve.wait()

    # Layer A (the incremental export), then layer B (the Tuva snapshot
    # over what layer A wrote), each its own process and figures.
    # (A file, not CLEARWAY__ANALYTICS__TUVA_SNAPSHOTS: builds before
    # the fix of that variable's parsing refuse "false".)
    layer_a = os.path.join(work, "layer-a.toml")
    with open(layer_a, "w") as f:
        f.write("[analytics]\ntuva_snapshots = false\n")
    out, wall, cpu, rss = run_measured(
        [clearway, "export", "--to", dest, "--json", "--data-dir", data, "--config", layer_a])
    ex = json.loads(out)
    lines = ex["rows"].get("claim_line", 0)
    if ex.get("tuvaSnapshot"):
        sys.exit("the layer-A export wrote a Tuva snapshot: the figures would mix both")
    out, t_wall, t_cpu, t_rss = run_measured(
        [clearway, "export", "--to", dest, "--tuva-snapshot", "--json", "--data-dir", data])
    tuva = json.loads(out)["tuvaSnapshot"]

    reports = [l.split("\t")[0] for l in subprocess.run(
        [clearway, "report", "list", "--data-dir", data], capture_output=True, check=True).stdout.decode().splitlines()]
    df = {}
    for name in reports:
        _, w, _, _ = run_measured([clearway, "report", name, "--source", dest, "--format", "csv", "--data-dir", data])
        df[name] = round(w, 3)
    duck = {}
    sqldir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "analytics", "reports")
    for name in reports:
        views, body = duckdb_sql(open(os.path.join(sqldir, name + ".sql")).read(), dest)
        prog = ("import duckdb, sys, time\ncon = duckdb.connect()\n"
                + "".join(f"con.execute({v!r})\n" for v in views)
                + f"t = time.time()\ncon.execute({body!r}).fetchall()\nprint(time.time() - t)\n")
        t = time.time()
        # A report over a table the run wrote no file of (no dead letters,
        # no real-time requests) has no view in DuckDB: left out of both
        # engines' totals.
        if subprocess.run([python, "-c", prog], capture_output=True).returncode == 0:
            duck[name] = round(time.time() - t, 3)

    result = {
        "bench": "analytics", "claims": ex["rows"].get("claim", 0), "claim_lines": lines,
        "processed_secs": round(processed_secs, 1),
        "export_wall_secs": round(wall, 2), "export_cpu_secs": round(cpu, 2),
        "export_lines_per_sec": round(lines / wall) if wall else None,
        "export_lines_per_cpu_sec": round(lines / cpu) if cpu else None,
        "export_peak_rss_mib": round(rss / 2**20, 1),
        "tuva_snapshot_lines": tuva["rows"].get("medical_claim", 0),
        "tuva_snapshot_adjudicated_lines": tuva["adjudicatedLines"],
        "tuva_snapshot_wall_secs": round(t_wall, 2), "tuva_snapshot_cpu_secs": round(t_cpu, 2),
        "tuva_snapshot_peak_rss_mib": round(t_rss / 2**20, 1),
        "report_pack_datafusion_secs": round(sum(v for k, v in df.items() if k in duck), 2),
        "reports_compared": sorted(duck),
        "report_pack_duckdb_secs": round(sum(duck.values()), 2),
        "datafusion": df, "duckdb": duck,
    }
    print(json.dumps(result))
    print(f"analytics: {lines} claim lines exported in {wall:.2f} s ({result['export_lines_per_cpu_sec']}/CPU-s, "
          f"peak RSS {result['export_peak_rss_mib']} MiB); Tuva snapshot {t_wall:.2f} s (peak RSS "
          f"{result['tuva_snapshot_peak_rss_mib']} MiB); report pack DataFusion {result['report_pack_datafusion_secs']} s "
          f"(process start included), DuckDB {result['report_pack_duckdb_secs']} s", file=sys.stderr)


if __name__ == "__main__":
    main()

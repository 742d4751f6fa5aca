#!/usr/bin/env python3
"""The operator console on a large store (`scripts/bench console`): a running
service (release build) on the embedded backend.

1. The store is filled through the real intake: `clearway-loadgen http`
   (837Ps of one claim, closed loop) until BENCH_CONSOLE_TRANSACTIONS
   transactions (default 1,000,000) are accepted, and the workers have
   processed them all.
2. An operator signs in to the console, and pages are fetched one after
   another over one keep-alive connection, BENCH_CONSOLE_SAMPLES times each
   (default 300): the dashboard; a search by transaction id (any partner);
   a partner's transactions from a point spread over the whole store, with
   and without a status filter (which reads up to 1,000 records); the
   transaction page (timeline, claims and the X12 viewer) of a transaction
   picked across the store.
3. Latency of each (p50, p99, max) next to the goals: search and
   transaction pages p99 <= 200 ms, dashboard p99 <= 500 ms.

With BENCH_CONSOLE_DATA set to a data directory an earlier run filled
(kept aside), step 1 is skipped and the pages are measured on that store,
served by an intake-only process (`serve --role intake`: no workers, so
nothing else runs during the measurement).

Usage: scripts/bench-console.py CLEARWAY_BIN LOADGEN WORKDIR
Prints one JSON line and a summary (stderr).
"""

import http.client
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import time
import urllib.parse


def metric(host, port, name):
    c = http.client.HTTPConnection(host, port, timeout=60)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    clearway, loadgen, work = sys.argv[1], sys.argv[2], sys.argv[3]
    want = int(os.environ.get("BENCH_CONSOLE_TRANSACTIONS", "1000000"))
    samples = int(os.environ.get("BENCH_CONSOLE_SAMPLES", "300"))
    reuse = os.environ.get("BENCH_CONSOLE_DATA")
    data = reuse or os.path.join(work, "console-data")
    key = None
    if not reuse:
        key = subprocess.check_output([clearway, "partners", "add", "--id", "acme", "--data-dir", data]).decode().strip()
    account = f"ops{os.getpid()}"
    password = subprocess.check_output(
        [clearway, "console-users", "add", "--name", account, "--role", "operator", "--data-dir", data],
        stderr=subprocess.DEVNULL,
    ).decode().strip()
    env = {
        **os.environ,
        "CLEARWAY_LOG": "warn",
        "CLEARWAY__LIMITS__SUBMIT_PER_SEC": "1000000",
        "CLEARWAY__LIMITS__SUBMIT_BURST": "1000000",
        "CLEARWAY__LIMITS__READ_PER_SEC": "1000000",
        "CLEARWAY__LIMITS__READ_BURST": "1000000",
        "CLEARWAY__SERVER__MAX_QUEUE_DEPTH": "5000000",
    }
    out = open(os.path.join(work, "console-serve.out"), "w")
    role = ["--role", "intake"] if reuse else []
    serve = subprocess.Popen(
        [clearway, "serve", "--data-dir", data, "--listen", "127.0.0.1:0", *role],
        stdout=out, stderr=subprocess.STDOUT, env=env,
    )
    try:
        addr = None
        for _ in range(400):
            text = open(os.path.join(work, "console-serve.out")).read()
            m = re.search(r"http listening\D*(127\.0\.0\.1:\d+)", text)
            if m:
                addr = m.group(1)
                break
            time.sleep(0.05)
        if not addr:
            sys.exit("the service did not start")
        host, port = addr.split(":")
        port = int(port)

        # 1. Fill.
        started = time.time()
        control = 1
        while not reuse and metric(host, port, "clearway_intake_accepted_total") < want:
            left = want - metric(host, port, "clearway_intake_accepted_total")
            secs = max(5, min(60, int(left / 4000) + 1))
            subprocess.run(
                [loadgen, "http", "--addr", addr, "--key", key, "--connections", "32", "--duration-secs", str(secs),
                 "--first-control", str(control)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
            )
            control += 10_000_000
        accepted = metric(host, port, "clearway_intake_accepted_total")
        # Processing a million transactions takes longer and more disk than
        # their intake: BENCH_CONSOLE_PROCESS_SECS bounds the wait, and the
        # pages are then measured by an intake-only process (no workers
        # running during the measurement either way).
        limit = float(os.environ.get("BENCH_CONSOLE_PROCESS_SECS", "inf"))
        waited = time.time()
        while not reuse and metric(host, port, "clearway_transactions_processed_total") < accepted:
            if time.time() - waited > limit:
                break
            time.sleep(2)
        processed = metric(host, port, "clearway_transactions_processed_total")
        fill_secs = time.time() - started
        if not reuse:
            print(f"console: {accepted:.0f} transactions accepted, {processed:.0f} processed, in {fill_secs:.0f} s",
                  file=sys.stderr)
            if processed < accepted:
                serve.terminate()
                serve.wait()
                out = open(os.path.join(work, "console-serve.out"), "w")
                serve = subprocess.Popen(
                    [clearway, "serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--role", "intake"],
                    stdout=out, stderr=subprocess.STDOUT, env=env,
                )
                addr = None
                for _ in range(400):
                    m = re.search(r"http listening\D*(127\.0\.0\.1:\d+)", open(os.path.join(work, "console-serve.out")).read())
                    if m:
                        addr = m.group(1)
                        break
                    time.sleep(0.05)
                if not addr:
                    sys.exit("the intake-only service did not start")
                host, port = addr.split(":")
                port = int(port)

        # 2. Sign in.
        c = http.client.HTTPConnection(host, port, timeout=60)
        form = urllib.parse.urlencode({"name": account, "password": password})
        c.request("POST", "/console/sign-in", body=form, headers={
            "Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Site": "same-origin"})
        r = c.getresponse()
        r.read()
        cookie = r.getheader("Set-Cookie").split(";")[0]
        headers = {"Cookie": cookie}

        def get(path):
            t = time.perf_counter()
            c.request("GET", path, headers=headers)
            r = c.getresponse()
            body = r.read()
            return (time.perf_counter() - t) * 1000, r.status, body.decode(errors="replace"), r.getheader("Location")

        # Points spread over the store: UUIDv7 ids from the first to the
        # last receipt time.
        _, status, first_page, _ = get("/console/search?partner=acme")
        ids = re.findall(r"/console/transactions/acme/([0-9a-f-]{36})", first_page)
        if not ids:
            sys.exit(f"no transactions listed ({status})")
        first_ms = int(ids[0].replace("-", "")[:12], 16)
        db = sqlite3.connect(f"file:{os.path.join(data, 'clearway.db')}?mode=ro", uri=True)
        newest = db.execute("select max(sk) from state where tbl = 'transactions' and pk = 'acme'").fetchone()[0]
        db.close()
        last_ms = int(newest.replace("-", "")[:12], 16)

        def cursor(ms):
            return f"{ms >> 16:08x}-{ms & 0xffff:04x}-7000-8000-000000000000"

        rng = random.Random(7)
        pool = []
        while len(pool) < samples:
            _, _, page, _ = get("/console/search?partner=acme&after=" + cursor(rng.randint(first_ms, last_ms)))
            found = re.findall(r"/console/transactions/acme/([0-9a-f-]{36})", page)
            pool.extend(found[:5])
        rng.shuffle(pool)
        statuses = {}

        # 3. Measure.
        times = {"dashboard": [], "search_by_id": [], "search_by_partner": [], "search_by_status": [], "transaction": [],
                 "search_by_control_number": []}
        found_by_control = 0
        listed = 0
        for i in range(samples):
            ms, status, _, _ = get("/console")
            assert status == 200, status
            times["dashboard"].append(ms)
            tid = pool[i % len(pool)]
            ms, status, _, loc = get(f"/console/search?id={tid}")
            assert status == 303 and loc.endswith(tid), (status, loc)
            times["search_by_id"].append(ms)
            ms, status, page, _ = get("/console/search?partner=acme&after=" + cursor(rng.randint(first_ms, last_ms)))
            assert status == 200, status
            times["search_by_partner"].append(ms)
            listed += len(re.findall(r'<th scope="row"><a href="/console/transactions/', page))
            # A status filter reads up to 1,000 records for its 50 rows.
            ms, status, page, _ = get(
                "/console/search?partner=acme&status=accepted&after=" + cursor(rng.randint(first_ms, last_ms))
            )
            assert status == 200, status
            times["search_by_status"].append(ms)
            ms, status, page, _ = get(f"/console/transactions/acme/{tid}")
            assert status == 200 and 'class="x12"' in page, status
            times["transaction"].append(ms)
            m = re.search(r'<dd id="status">([a-z_]+)</dd>', page)
            statuses[m.group(1) if m else "?"] = statuses.get(m.group(1) if m else "?", 0) + 1
            # Its ISA13, through the control-number index (written when a
            # worker processed it).
            isa13 = re.search(r"ISA13 ([0-9]{9})", page)
            if isa13:
                ms, status, page, _ = get(f"/console/search?ctl=isa13&number={isa13.group(1)}")
                assert status == 200, status
                times["search_by_control_number"].append(ms)
                found_by_control += tid in page
        # Transaction records in the store (the embedded backend's table).
        db = sqlite3.connect(f"file:{os.path.join(data, 'clearway.db')}?mode=ro", uri=True)
        stored = db.execute("select count(*) from state where tbl = 'transactions'").fetchone()[0]
        db.close()
        result = {
            "transactions": stored,
            "fill_seconds": None if reuse else round(fill_secs),
            "sampled_statuses": statuses,
            "rows_per_partner_page": round(listed / samples, 1),
            "found_by_control_number": found_by_control,
            "samples": samples,
            "pages": {
                k: {"p50_ms": round(percentile(v, 50), 2), "p99_ms": round(percentile(v, 99), 2), "max_ms": round(max(v), 2)}
                for k, v in times.items()
            },
        }
        print(json.dumps(result))
        goals = {"dashboard": 500, "search_by_id": 200, "search_by_partner": 200, "search_by_status": 200, "transaction": 200,
                 "search_by_control_number": 200}
        for k, v in result["pages"].items():
            met = "met" if v["p99_ms"] <= goals[k] else "NOT met"
            print(f"console: {k}: p50 {v['p50_ms']} ms, p99 {v['p99_ms']} ms (goal {goals[k]} ms: {met}), max {v['max_ms']} ms",
                  file=sys.stderr)
    finally:
        serve.terminate()
        serve.wait()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The payer round trip under load (`scripts/bench roundtrip`): a running
service (release build) on the embedded backend with payer ACME01 on the
outbox directory.

1. 10,000 claims are submitted (10 synthetic 837Ps of 1,000, every claim
   for ACME01) and leave as payer batches of 5,000.
2. The payer's 277CA for all 10,000 (one file, one interchange per batch,
   built with `clearway ack`) is dropped in the payer's answer directory:
   the time to apply it and forward a 277CA to the submitter is read from
   the service's own histogram (clearway_payer_file_apply_seconds).
3. An 835 of 100,000 claims (BENCH_835_CLAIMS; paying those patient
   control numbers; in BENCH_835_SETS transaction sets, default 1) is
   dropped the same way: its apply time, and the service's peak RSS
   (VmHWM) before and after.

Usage: scripts/bench-roundtrip.py CLEARWAY_BIN WORKDIR
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
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["transactionId"]


def metric(base, name, labels=""):
    text = urllib.request.urlopen(f"{base}/metrics", timeout=30).read().decode()
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + " ") or line.startswith(name + "{")) and labels in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def hwm(pid):
    status = open(f"/proc/{pid}/status").read()
    return {k: int(re.search(rf"{k}:\s+(\d+)", status).group(1)) * 1024 for k in ("VmHWM", "VmRSS")}


def wait(what, f, secs=600):
    deadline = time.time() + secs
    while time.time() < deadline:
        v = f()
        if v:
            return v
        time.sleep(0.2)
    sys.exit(f"timed out waiting for {what}")


def remittance(pcns, paid_each=10, sets=1):
    """One interchange of `sets` 835 transaction sets (each its own
    payment) paying `pcns` between them."""
    body = []
    for n in range(sets):
        # Dealt round-robin, so that every set pays some claim that was
        # routed (the submitted claims' numbers are the first ones).
        part = pcns[n::sets]
        st = f"{n + 1:04d}"
        seg = [
            f"ST*835*{st}",
            f"BPR*I*{paid_each * len(part)}*C*ACH*CCP*01*999999992*DA*123456*1512345678**01*999988880*DA*98765*20261205",
            f"TRN*1*{12345678901 + n}*1512345678",
            "DTM*405*20261205",
            "N1*PR*ACME HEALTH",
            "N3*1 PAYER WAY",
            "N4*SPRINGFIELD*IL*62701",
            "PER*BL*PAYER DESK*TE*5555550199",
            "N1*PE*CLINIC*XX*1000000012",
            "REF*TJ*123456789",
            "LX*1",
        ]
        for p in part:
            seg += [f"CLP*{p}*1*100*{paid_each}**12*ICN{p}*11*1", "NM1*QC*1*TESTLAST*PAT****MI*M1", "DTM*232*20261130"]
        seg.append(f"SE*{len(seg) + 1}*{st}")
        body += seg
    env = [
        "ISA*00*          *00*          *ZZ*ACMEPAYER      *ZZ*CLEARWAY       *261205*0900*^*00501*000000777*0*P*:",
        "GS*HP*ACMEPAYER*CLEARWAY*20261205*0900*777*X*005010X221A1",
    ]
    return ("~\n".join(env + body + [f"GE*{sets}*777", "IEA*1*000000777"]) + "~\n").encode()


def main():
    clearway, work = sys.argv[1], sys.argv[2]
    data = os.path.join(work, "rt-data")
    config = os.path.join(work, "rt.toml")
    open(config, "w").write(
        '[routing]\nbatch_window_secs = 2\n\n[payers.ACME01]\nname = "ACME HEALTH"\npoll_secs = 1\nbatch_max_claims = 5000\n'
        'batch_max_bytes = 67108864\n'
    )
    key = subprocess.run([clearway, "partners", "add", "--id", "bench", "--data-dir", data], capture_output=True, check=True).stdout.decode().strip()
    env = dict(os.environ, CLEARWAY_LOG="warn")

    def start():
        serve = subprocess.Popen(
            [clearway, "serve", "--config", config, "--data-dir", data, "--listen", "127.0.0.1:0", "--mllp-listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
        )
        base = None
        for line in serve.stdout:
            line = line.decode()
            if line.startswith("clearway: http listening on "):
                base = line.split()[4]
            if line.strip() == "clearway: ready":
                break
        return serve, base

    serve, base = start()
    try:
        # 1. 10,000 claims for ACME01.
        started = time.time()
        ids = []
        for seed in range(10):
            body = subprocess.run([clearway, "gen", "837p", "--count", "1000", "--seed", str(100 + seed)], capture_output=True, check=True).stdout
            for other in (b"BEX02", b"GMU03", b"SMC04"):
                body = body.replace(b"*PI*" + other + b"~", b"*PI*ACME01~")
            ids.append(post(base, key, body))
        outbox = os.path.join(data, "outbox", "ACME01")

        def batches():
            if not os.path.isdir(outbox):
                return None
            files = sorted(os.path.join(outbox, f) for f in os.listdir(outbox) if f.startswith("CW_ACME01_"))
            n = sum(open(f, "rb").read().count(b"~REF*D9*") for f in files)
            return files if n >= 10_000 else None

        files = wait("10,000 claims in batches", batches)
        batched_secs = time.time() - started
        # 2. The payer's 277CA for all of them, in one file.
        answer = b""
        for f in files:
            answer += subprocess.run([clearway, "ack", "--kind", "277ca", f], capture_output=True, check=True).stdout
        back = os.path.join(outbox, "from-payer")
        os.makedirs(back, exist_ok=True)
        open(os.path.join(back, ".payer.277"), "wb").write(answer)
        os.rename(os.path.join(back, ".payer.277"), os.path.join(back, "payer.277"))
        wait("the 277CA applied", lambda: metric(base, "clearway_payer_files_total", 'outcome="applied"') >= 1)
        apply_277 = metric(base, "clearway_payer_file_apply_seconds_sum")
        forwarded = metric(base, "clearway_payer_claim_answers_total", 'kind="277ca"')
        peak_intake = hwm(serve.pid)
        # 3. An 835 of 100,000 claims, applied by a freshly started service
        # (so its peak is the 835's, not the intake's above).
        serve.terminate()
        serve.wait(timeout=60)
        serve, base = start()
        time.sleep(2)
        before = hwm(serve.pid)
        n_835 = int(os.environ.get("BENCH_835_CLAIMS", "100000"))
        pcns = [f"PCN{n:08d}" for n in range(1, n_835 + 1)]
        sets_835 = int(os.environ.get("BENCH_835_SETS", "1"))
        open(os.path.join(back, ".era.835"), "wb").write(remittance(pcns, sets=sets_835))
        size_835 = os.path.getsize(os.path.join(back, ".era.835"))
        os.rename(os.path.join(back, ".era.835"), os.path.join(back, "era.835"))
        wait(
            "the 835 applied",
            lambda: metric(base, "clearway_payer_files_total", 'outcome="applied"') + metric(base, "clearway_payer_files_total", 'outcome="attention"') >= 1,
        )
        apply_835 = metric(base, "clearway_payer_file_apply_seconds_sum")
        after = hwm(serve.pid)
        result = {
            "claims": 10_000,
            "batches": len(files),
            "submitted_to_batched_secs": round(batched_secs, 2),
            "apply_277ca_10000_secs": round(apply_277, 3),
            "claims_answered_277ca": forwarded,
            "claims_835": n_835,
            "sets_835": sets_835,
            "apply_835_secs": round(apply_835, 3),
            "file_835_bytes": size_835,
            "rss_peak_intake_and_277ca_bytes": peak_intake["VmHWM"],
            "rss_peak_before_835_bytes": before["VmHWM"],
            "rss_peak_after_835_bytes": after["VmHWM"],
        }
        print(json.dumps(result))
        print(
            f"roundtrip: 10,000 claims in {len(files)} batches {batched_secs:.1f} s after the first submission; "
            f"payer 277CA of 10,000 applied and forwarded in {apply_277:.3f} s ({forwarded:.0f} claim answers); "
            f"835 of {n_835:,} claims in {sets_835:,} set(s) ({size_835 / 1e6:.1f} MB) applied in {apply_835:.2f} s; "
            f"peak RSS of a fresh service {before['VmHWM'] / 2**20:.0f} MiB before it, {after['VmHWM'] / 2**20:.0f} MiB after "
            f"(the intake of 10,000 claims and the 277CA had peaked at {peak_intake['VmHWM'] / 2**20:.0f} MiB)",
            file=sys.stderr,
        )
    finally:
        serve.terminate()
        serve.wait(timeout=60)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Cross-checks Clearway's X12 output with an independent validator, pyx12.

Generates synthetic transactions with `clearway gen`, builds their
acknowledgements with `clearway ack`, and validates each with pyx12's own
implementation-guide maps. A sanity check makes sure pyx12 does reject a
broken file, so a silent validator cannot make this pass.

pyx12 4.0.0 ships a 277 X212 map but does not register it in maps.xml nor
list 005010X212 among its GS08 codes, and the map itself is mis-structured
(see fix_x212_map). A copy of its map directory with those corrections is
used; the public 277 X212 samples in the shared corpus check that the
corrected map accepts what it should and rejects what it should.

Usage: scripts/pyx12-check.py PATH/TO/clearway
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET

import pyx12
import pyx12.params
import pyx12.x12n_document

AT = "2024-01-15T12:00:00Z"
CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "corpus", "x12")


def map_dir(tmp):
    src = os.path.join(os.path.dirname(pyx12.__file__), "map")
    dst = os.path.join(tmp, "map")
    shutil.copytree(src, dst)
    maps = os.path.join(dst, "maps.xml")
    text = open(maps, encoding="utf-8").read()
    line = '<map vriic="005010X212" fic="HN" abbr="277">277.5010.X212.xml</map>'
    if line not in text:
        text = text.replace(
            '<map vriic="005010X214" fic="HN" abbr="277">',
            line + '\n    <map vriic="005010X214" fic="HN" abbr="277">',
        )
        open(maps, "w", encoding="utf-8").write(text)
    # ... nor list 005010X212 among the GS08 codes of its envelope map.
    control = os.path.join(dst, "x12.control.00501.xml")
    text = open(control, encoding="utf-8").read()
    if "<code>005010X212</code>" not in text:
        text = text.replace("<code>005010X214</code>", "<code>005010X212</code>\n            <code>005010X214</code>", 1)
        open(control, "w", encoding="utf-8").write(text)
    fix_x212_map(os.path.join(dst, "277.5010.X212.xml"))
    return dst


def fix_x212_map(path):
    """Corrects the structure of pyx12 4.0.0's 277 005010X212 map, leaving
    its segment and element rules as they are. As shipped, the map rejects
    every valid public 277 X212 sample, because:
    - its GS segment is copied from another map (GS01 RA, GS08 005010X218)
      where the 277 needs HN and 005010X212;
    - ST, the header and the detail table have positions out of order
      (the BHT at 0200 comes after the detail at 0120), so the walker never
      finds 2000A after the BHT;
    - the HL levels 2000B-2000E are siblings in wrapper loops instead of
      each being nested in the level above it (as in pyx12's X214 map and
      the TR3's hierarchy), so a 2000C after a 2000B is never found;
    - SE sits in a wrapper under GS_LOOP instead of closing the ST loop.
    Each correction makes the map match the 005010X212 TR3 and pyx12's own
    X214 map; no rule is loosened."""
    tree = ET.parse(path)
    root = tree.getroot()
    loops = {loop.get("xid"): loop for loop in root.iter("loop")}
    parent = {child: node for node in root.iter() for child in node}

    def segment(loop, xid):
        return next(s for s in loop if s.tag == "segment" and s.get("xid") == xid)

    def detach(node):
        parent[node].remove(node)
        return node

    def set_pos(node, pos):
        node.find("pos").text = pos

    for element in segment(loops["GS_LOOP"], "GS").iter("element"):
        if element.get("xid") == "GS01":
            element.find("valid_codes/code").text = "HN"
        if element.get("xid") == "GS08":
            element.find("valid_codes/code").text = "005010X212"
    st_loop = loops["ST_LOOP"]
    set_pos(segment(st_loop, "ST"), "0050")
    set_pos(loops["HEADER"], "0100")
    set_pos(loops["DETAIL"], "0200")
    wrapper = detach(loops["TABLE2AREA3"])
    se = segment(wrapper, "SE")
    wrapper.remove(se)
    set_pos(se, "5550")
    st_loop.append(se)
    levels = ["2000A", "2000B", "2000C", "2000D", "2000E"]
    for upper, lower in zip(levels, levels[1:]):
        node = detach(loops[lower])
        set_pos(node, "2000")
        loops[upper].append(node)
        parent[node] = loops[upper]
    for name in ("TABLE2AREA4", "TABLE2AREA5", "TABLE2AREA6"):
        detach(loops[name])
    tree.write(path, encoding="utf-8", xml_declaration=True)


def valid(path, maps):
    """True when pyx12 finds no error in the file."""
    param = pyx12.params.params()
    return bool(
        pyx12.x12n_document.x12n_document(
            param=param, src_file=path, fd_997=None, fd_html=None, fd_xmldoc=None, map_path=maps
        )
    )


def run(clearway, args, out):
    with open(out, "wb") as f:
        subprocess.run([clearway, *args], stdout=f, check=True)


def post(url, body, content_type, key):
    req = urllib.request.Request(url, data=body, method="POST")
    req.add_header("Content-Type", content_type)
    req.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read()


def get_json(url, key):
    req = urllib.request.Request(url)
    req.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def fastpath_277(clearway, tmp):
    """Runs the service, records claims through the async path, and asks
    the fast path about them: returns the path of the 277 it answered."""
    data = os.path.join(tmp, "data")
    key = subprocess.run(
        [clearway, "partners", "add", "--id", "pyx12", "--data-dir", data], capture_output=True, check=True
    ).stdout.decode().strip()
    serve = subprocess.Popen(
        [clearway, "serve", "--data-dir", data, "--listen", "127.0.0.1:0", "--mllp-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = None
        for line in serve.stdout:
            line = line.decode()
            if line.startswith("clearway: http listening on "):
                base = line.split()[4]
            if line.strip() == "clearway: ready":
                break
        claims = subprocess.run([clearway, "gen", "837p", "--count", "6", "--seed", "5"], capture_output=True, check=True).stdout
        tx = json.loads(post(f"{base}/v1/transactions", claims, "application/edi-x12", key))["transactionId"]
        for _ in range(200):
            if get_json(f"{base}/v1/transactions/{tx}", key)["status"] in ("accepted", "rejected"):
                break
            time.sleep(0.1)
        inquiry = subprocess.run([clearway, "gen", "276", "--count", "6", "--seed", "3"], capture_output=True, check=True).stdout
        answer = post(f"{base}/v1/claim-status", inquiry, "application/edi-x12", key)
        out = os.path.join(tmp, "fastpath.277")
        open(out, "wb").write(answer)
        text = answer.decode("ascii")
        if "STC*A1:20" not in text or "STC*D0:35" not in text:
            print("FAILED the fast path's 277 lacks the expected found and not-found statuses:\n" + text)
            return None
        # The public X212 276 example: its provider NPIs are illustrative and
        # fail the check digit, which the 277 reports at the provider level.
        sample = os.path.join(CORPUS, "276-lfh-claim-level-status.x12")
        answer = post(f"{base}/v1/claim-status", open(sample, "rb").read(), "application/edi-x12", key)
        provider = os.path.join(tmp, "fastpath-provider.277")
        open(provider, "wb").write(answer)
        if "STC*E0:562:1P" not in answer.decode("ascii"):
            print("FAILED the 277 for the public 276 lacks STC*E0:562:1P:\n" + answer.decode("ascii"))
            return None
        return out, provider
    finally:
        serve.terminate()
        serve.wait(timeout=30)


def round_trip(clearway, tmp):
    """Runs the service with payers on the outbox directory, sends claims
    of two submitters (837P and 837I), and plays the payer: returns the
    outbound batches and the 277CAs forwarded to the submitters."""
    data = os.path.join(tmp, "rt-data")
    config = os.path.join(tmp, "rt.toml")
    open(config, "w").write('[routing]\nbatch_window_secs = 1\n\n[payers.ACME01]\nname = "ACME HEALTH"\npoll_secs = 1\n')
    keys = {}
    for partner in ("sub1", "sub2"):
        keys[partner] = subprocess.run(
            [clearway, "partners", "add", "--id", partner, "--data-dir", data], capture_output=True, check=True
        ).stdout.decode().strip()
    serve = subprocess.Popen(
        [clearway, "serve", "--config", config, "--data-dir", data, "--listen", "127.0.0.1:0", "--mllp-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = None
        for line in serve.stdout:
            line = line.decode()
            if line.startswith("clearway: http listening on "):
                base = line.split()[4]
            if line.strip() == "clearway: ready":
                break
        sent = 0
        for partner, kind, seed in (("sub1", "837p", 21), ("sub2", "837p", 22), ("sub1", "837i", 23)):
            claims = subprocess.run([clearway, "gen", kind, "--count", "12", "--seed", str(seed)], capture_output=True, check=True).stdout
            tx = json.loads(post(f"{base}/v1/transactions", claims, "application/edi-x12", keys[partner]))["transactionId"]
            for _ in range(300):
                t = get_json(f"{base}/v1/transactions/{tx}", keys[partner])
                if t["status"] in ("accepted", "rejected"):
                    break
                time.sleep(0.1)
            sent += sum(1 for c in t["claims"] if c["status"] != "rejected")
        outbox = os.path.join(data, "outbox")
        batches = []
        for _ in range(300):
            batches = sorted(
                os.path.join(outbox, p, f)
                for p in os.listdir(outbox)
                for f in os.listdir(os.path.join(outbox, p))
                if f.startswith("CW_") and f.endswith(".x12")
            ) if os.path.isdir(outbox) else []
            if sum(open(b, encoding="ascii").read().count("~REF*D9*") for b in batches) >= sent:
                break
            time.sleep(0.2)
        # The payer ACME01 answers its batches with 277CAs.
        answers = os.path.join(outbox, "ACME01", "from-payer")
        os.makedirs(answers, exist_ok=True)
        acme = [b for b in batches if os.sep + "ACME01" + os.sep in b]
        for b in acme:
            out = os.path.join(tmp, "payer-" + os.path.basename(b))
            run(clearway, ["ack", "--kind", "277ca", "--time", AT, b], out)
            os.rename(out, os.path.join(answers, os.path.basename(out)))
        forwarded = []
        for _ in range(300):
            forwarded = []
            for partner, key in keys.items():
                feed = get_json(f"{base}/v1/acks?wait=0&limit=500", key)
                for a in feed["acks"]:
                    if "-277ca-payer-" in a["id"]:
                        body = urllib.request.Request(f"{base}/v1/transactions/{a['transactionId']}/acks/{a['id']}")
                        body.add_header("Authorization", f"Bearer {key}")
                        with urllib.request.urlopen(body, timeout=30) as resp:
                            path = os.path.join(tmp, f"forwarded-{partner}-{len(forwarded)}.277")
                            open(path, "wb").write(resp.read())
                            forwarded.append(path)
            if acme and len(forwarded) >= 2:
                break
            time.sleep(0.2)
        return batches, forwarded
    finally:
        serve.terminate()
        serve.wait(timeout=30)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    clearway = sys.argv[1]
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        maps = map_dir(tmp)

        def check(name, path, expect=True):
            ok = valid(path, maps)
            status = "ok" if ok == expect else "FAILED"
            print(f"{status:6} {name}: pyx12 says {'valid' if ok else 'invalid'} (expected {'valid' if expect else 'invalid'})")
            if ok != expect:
                failures.append(name)

        checks = [("837p", "837P 005010X222A1"), ("834", "834 005010X220A1")]
        for kind, name in checks:
            src = os.path.join(tmp, f"{kind}.x12")
            run(clearway, ["gen", kind, "--count", "25", "--seed", "7"], src)
            check(f"generated {name}", src)
        src837 = os.path.join(tmp, "837p.x12")
        for kind, name in [("999", "999 005010X231A1"), ("277ca", "277CA 005010X214")]:
            out = os.path.join(tmp, f"ack-{kind}.x12")
            run(clearway, ["ack", "--kind", kind, "--time", AT, src837], out)
            check(f"our {name} for the generated 837P", out)
        # 277CAs that reject claims: several claim-level statuses in one
        # STC (the TR3 examples' illustrative NPIs), line-level rejections
        # in 2220D (an ordering provider's NPI; a diagnosis pointer with no
        # diagnosis) and an unbalanced claim.
        corpus = CORPUS
        rejecting = [os.path.join(corpus, n) for n in ["837p-lfh-auto-accident.x12", "837p-lfh-example7.x12"]]
        edited = os.path.join(tmp, "edited-837p.x12")
        text = open(src837, encoding="ascii").read()
        text = text.replace("*UN*1***1~", "*UN*1***1:9~", 1).replace("CLM*PCN00000002*", "CLM*PCN00000002*1", 1)
        open(edited, "w", encoding="ascii").write(text)
        for path in rejecting + [edited]:
            name = os.path.basename(path)
            out = os.path.join(tmp, f"ack-277ca-{name}")
            run(clearway, ["ack", "--kind", "277ca", "--time", AT, path], out)
            ack = open(out, encoding="ascii").read()
            if "*U*" not in ack or ("SVC*" not in ack and name != "837p-lfh-auto-accident.x12"):
                failures.append(f"rejecting 277CA content for {name}")
                print(f"FAILED the 277CA for {name} lacks a rejection or its 2220D:\n" + ack)
            check(f"our rejecting 277CA for {name}", out)
        # A rejecting 999 with IK3/IK4 and the claim's business-unit CTX.
        # (pyx12 matches CTX segments by id alone, so it cannot tell the
        # IG's segment-context CTX from its business-unit CTX when an IK3
        # carries both; that combination is checked by our own X231A1
        # tables in the Rust tests instead.)
        bad837 = os.path.join(tmp, "bad-837p.x12")
        text = open(src837, encoding="ascii").read()
        text = text.replace("*UN*1***1~", "*XX*1***1~", 1)
        open(bad837, "w", encoding="ascii").write(text)
        out = os.path.join(tmp, "ack-bad-999.x12")
        run(clearway, ["ack", "--kind", "999", "--time", AT, bad837], out)
        ack = open(out, encoding="ascii").read()
        if "IK4*" not in ack or "CTX*CLM01" not in ack:
            failures.append("rejecting 999 content")
            print("FAILED the rejecting 999 lacks IK4 or CTX segments:\n" + ack)
        check("our rejecting 999 (IK3/IK4/CTX) for a broken 837P", out)
        # The fast path's 277 (005010X212), under the corrected X212 map.
        # The public samples show the map judges rightly: the four valid
        # ones pass, and the imsweb one fails: its IEA02 does not match its
        # ISA13, and its STC segments carry STC03 and STC12, which the X212
        # TR3 marks not used (they belong to the 277CA).
        samples = [
            ("277-lfh-claim-level-status.x12", True),
            ("277-lfh-claim-level-status-ncpdp.x12", True),
            ("277-lfh-information-receiver-level-status.x12", True),
            ("277-herophilus-276-response-claim-info.x12", True),
            ("277-imsweb-claim-status-x212.x12", False),
        ]
        for name, expect in samples:
            sample = os.path.join(corpus, name)
            if os.path.exists(sample):
                check(f"public sample {name}", sample, expect=expect)
        answered = fastpath_277(clearway, tmp)
        if answered is None:
            failures.append("fast path 277 content")
        else:
            answered, provider = answered
            check("the fast path's 277 005010X212", answered)
            check("the fast path's 277 for a 276 with an invalid provider NPI", provider)
            # And it must be able to fail ours: a status without its
            # category code.
            broken = os.path.join(tmp, "broken.277")
            text = open(answered, encoding="ascii").read()
            open(broken, "w", encoding="ascii").write(text.replace("STC*A1:20", "STC*:20", 1))
            check("the fast path's 277 with an STC lacking its category", broken, expect=False)
        # The round trip: every outbound batch, and every 277CA forwarded
        # to a submitter from the payer's.
        batches, forwarded = round_trip(clearway, tmp)
        if len(batches) < 2 or len(forwarded) < 2:
            failures.append("round trip")
            print(f"FAILED the round trip gave {len(batches)} batches and {len(forwarded)} forwarded 277CAs")
        for b in batches:
            check(f"outbound batch {os.path.basename(os.path.dirname(b))}/{os.path.basename(b)}", b)
        for f in forwarded:
            check(f"forwarded payer 277CA {os.path.basename(f)}", f)
        # The validator must be able to fail: a 999 with a broken AK9 count.
        broken = os.path.join(tmp, "broken-999.x12")
        text = open(os.path.join(tmp, "ack-999.x12"), encoding="ascii").read()
        open(broken, "w", encoding="ascii").write(text.replace("AK9*A*1*1*1", "AK9*Q*1*1*1"))
        check("a deliberately broken 999", broken, expect=False)
    if failures:
        print(f"pyx12 cross-check failed: {', '.join(failures)}")
        sys.exit(1)


if __name__ == "__main__":
    main()

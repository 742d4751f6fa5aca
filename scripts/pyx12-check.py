#!/usr/bin/env python3
"""Cross-checks Clearway's X12 output with an independent validator, pyx12.

Generates synthetic transactions with `clearway gen`, builds their
acknowledgements with `clearway ack`, and validates each with pyx12's own
implementation-guide maps. A sanity check makes sure pyx12 does reject a
broken file, so a silent validator cannot make this pass.

pyx12 4.0.0 ships a 277 X212 map but does not register it in maps.xml; a
copy of its map directory with that one registration added is used.

Usage: scripts/pyx12-check.py PATH/TO/clearway
"""

import os
import shutil
import subprocess
import sys
import tempfile

import pyx12
import pyx12.params
import pyx12.x12n_document

AT = "2024-01-15T12:00:00Z"


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
    return dst


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

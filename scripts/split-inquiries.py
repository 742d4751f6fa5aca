#!/usr/bin/env python3
"""Splits a 270 or 276 interchange with many inquiries into one file per
inquiry (each a whole interchange with one subscriber loop), for the fast
path benchmark: `split-inquiries.py IN OUTDIR`."""
import os
import sys


def main(src, out):
    data = open(src, "rb").read().decode("ascii")
    elem, term = data[3], data[105]
    segs = [s.strip() for s in data.split(term) if s.strip()]
    st = next(i for i, s in enumerate(segs) if s.startswith("ST" + elem))
    se = next(i for i, s in enumerate(segs) if s.startswith("SE" + elem))
    body = segs[st:se]
    starts = [i for i, s in enumerate(body) if s.startswith("HL" + elem) and s.split(elem)[3] == "22"]
    head, blocks = body[: starts[0]], []
    for n, b in enumerate(starts):
        blocks.append(body[b : starts[n + 1] if n + 1 < len(starts) else len(body)])
    hl_in_head = sum(1 for s in head if s.startswith("HL" + elem))
    os.makedirs(out, exist_ok=True)
    for n, block in enumerate(blocks):
        block = list(block)
        f = block[0].split(elem)
        f[1] = str(hl_in_head + 1)
        block[0] = elem.join(f)
        st_to_se = head + block
        se_seg = elem.join(["SE", str(len(st_to_se) + 1), segs[se].split(elem)[2]])
        whole = segs[:st] + st_to_se + [se_seg] + segs[se + 1 :]
        with open(os.path.join(out, f"{n:06}.x12"), "w") as fh:
            fh.write(term.join(whole) + term)
    print(len(blocks))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

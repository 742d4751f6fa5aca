#!/usr/bin/env python3
"""An independent check of Clearway's audit log (for tests/audit.rs).

Recomputes the RFC 6962 Merkle tree hash of the events in an embedded
audit.db with its own implementation (hashlib), parses a C2SP signed-note
checkpoint and verifies its Ed25519 signature with the `cryptography`
library against a verifier key (`name+keyid+base64(0x01 || public key)`,
key id = SHA-256(name || "\\n" || 0x01 || public key)[:4]).

Usage: audit-crosscheck.py AUDIT_DB CHECKPOINT_FILE VERIFIER_KEY
Prints "ok SIZE" and exits 0, or says what failed and exits 1.
"""
import base64
import hashlib
import sqlite3
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def mth(leaves):
    """RFC 6962 section 2.1, as written there."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


def fail(why):
    print(f"FAILED: {why}")
    sys.exit(1)


def main():
    db, note_file, vkey = sys.argv[1], sys.argv[2], sys.argv[3].strip()
    note = open(note_file, encoding="utf-8").read()
    body, _, sigs = note.partition("\n\n")
    body += "\n"
    lines = body.split("\n")
    origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2])

    name, key_id_hex, key_b64 = vkey.split("+", 2)
    key = base64.b64decode(key_b64)
    if key[0] != 1 or len(key) != 33:
        fail("not an Ed25519 verifier key")
    key_id = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    if key_id.hex() != key_id_hex:
        fail("the verifier key's id does not match its key")
    if name != origin:
        fail(f"checkpoint origin {origin!r} is not the key's name {name!r}")

    verified = False
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            continue
        signer, sig_b64 = line[2:].rsplit(" ", 1)
        sig = base64.b64decode(sig_b64)
        if signer != name or sig[:4] != key_id:
            continue
        Ed25519PublicKey.from_public_bytes(key[1:]).verify(sig[4:], body.encode())
        verified = True
    if not verified:
        fail("no signature by the verifier key")

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    leaves = [bytes(r[0]) for r in conn.execute("SELECT event FROM leaves WHERE seq < ? ORDER BY seq", (size,))]
    if len(leaves) != size:
        fail(f"the log holds {len(leaves)} events below the checkpoint's {size}")
    if mth(leaves) != root:
        fail("the recomputed root is not the checkpoint's")
    print(f"ok {size}")


if __name__ == "__main__":
    main()

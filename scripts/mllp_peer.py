#!/usr/bin/env python3
"""A receiving system for the routing tests: an MLLP server that plays an
EHR (reads framed HL7 v2 messages, answers each with an ACK) and an HTTP
server that plays a FHIR server or an HTTP subscriber. Standard library
only.

What it answers is chosen by the message's control id (MSH-10), so a test
can ask for each case:

  AE<n>-...    AE the first n times this control id arrives (at this
               listener), then AA
  AR-...       AR, always
  DROP-...     the first time: close the connection without an ACK
  SLOW-...     AA after --slow-ms (default 3000)
  otherwise    AA (after --delay-ms, default 0)

Every message it answers AA/AE/AR (and every drop) is appended to the log
file as one JSON line: {"port", "control", "type", "answer", "n"} (n: how
many times this control id arrived), flushed at once. The HTTP side logs
POSTs the same way: {"path", "type", "id", "answer"} with type the FHIR
resourceType or the HL7 message type; it answers 201 (or 500 for a body
whose id starts with "FAIL", 400 for "BAD").

Usage:
  mllp_peer.py --log FILE [--mllp N] [--http N] [--delay-ms MS] [--slow-ms MS]
               [--tls CERT KEY] [--tls-client-ca CA]
Each --mllp / --http opens one listener on 127.0.0.1 (0: any free port)
and prints "mllp listening on 127.0.0.1:PORT" / "http listening on ...".
With --tls, every listener speaks TLS with that certificate (Python's ssl,
OpenSSL); with --tls-client-ca too, clients must present a certificate
that CA issued, and its subject's CN is logged as "client".
"""

import argparse
import http.server
import json
import socket
import socketserver
import ssl
import sys
import threading
import time

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"
LOCK = threading.Lock()
SEEN = {}
TLS = None


def log(path, record):
    with LOCK:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()


def fields(msg):
    for seg in msg.split(b"\r"):
        if seg.startswith(b"MSH"):
            sep = seg[3:4].decode()
            parts = seg.decode("latin-1").split(sep)
            # MSH-1 is the separator itself: parts[n] is MSH-(n+1).
            control = parts[9] if len(parts) > 9 else ""
            mtype = parts[8] if len(parts) > 8 else ""
            comp = parts[1][0:1] if len(parts) > 1 else "^"
            return control, "^".join(mtype.split(comp)[:2]), parts, sep
    return "", "", [], "|"


def ack(parts, sep, code, control):
    comp = parts[1][0:1] if len(parts) > 1 else "^"
    version = parts[11] if len(parts) > 11 else "2.5.1"
    now = time.strftime("%Y%m%d%H%M%S")
    msh = sep.join([
        "MSH", parts[1] if len(parts) > 1 else "^~\\&", "EHR", "EHR",
        parts[2] if len(parts) > 2 else "", parts[3] if len(parts) > 3 else "",
        now, "", "ACK", "A" + control[:19], "P", version,
    ])
    msa = sep.join(["MSA", code, control])
    out = msh + "\r" + msa + "\r"
    if code != "AA":
        out += sep.join(["ERR", "", "", comp.join(["207", "Application internal error", "HL70357"]), "E"]) + "\r"
    return out.encode()


def client_cn(sock):
    try:
        cert = sock.getpeercert()
    except (AttributeError, ValueError):
        return ""
    for rdn in (cert or {}).get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return ""


class Mllp(socketserver.BaseRequestHandler):
    def handle(self):
        buf = b""
        sock = self.request
        if TLS is not None:
            try:
                sock = TLS.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError):
                return
        client = client_cn(sock)
        port = self.server.server_address[1]
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while True:
                start = buf.find(SB)
                end = buf.find(EB + CR, start + 1)
                if start < 0 or end < 0:
                    break
                msg = buf[start + 1:end]
                buf = buf[end + 2:]
                control, mtype, parts, sep = fields(msg)
                with LOCK:
                    n = SEEN.get((port, control), 0) + 1
                    SEEN[(port, control)] = n
                code = "AA"
                if control.startswith("DROP-") and n == 1:
                    log(ARGS.log, {"port": port, "control": control, "type": mtype, "answer": "drop", "n": n})
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    sock.close()
                    return
                if control.startswith("AR-"):
                    code = "AR"
                elif control.startswith("AE"):
                    times = int("".join(c for c in control[2:].split("-")[0] if c.isdigit()) or "1")
                    code = "AE" if n <= times else "AA"
                delay = ARGS.slow_ms if control.startswith("SLOW-") else ARGS.delay_ms
                if delay:
                    time.sleep(delay / 1000.0)
                log(ARGS.log, {"port": port, "control": control, "type": mtype, "answer": code, "n": n,
                               "client": client})
                try:
                    sock.sendall(SB + ack(parts, sep, code, control) + EB + CR)
                except OSError:
                    return


class Http(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        kind, rid = "", ""
        if body.lstrip().startswith(b"{"):
            try:
                v = json.loads(body)
                kind, rid = v.get("resourceType", ""), v.get("id", "")
            except ValueError:
                pass
        else:
            rid, kind, _, _ = fields(body)
        status = 201
        if rid.startswith("FAIL"):
            status = 500
        elif rid.startswith("BAD"):
            status = 400
        log(ARGS.log, {"path": self.path, "type": kind, "id": rid, "answer": status,
                       "key": self.headers.get("Idempotency-Key", ""), "client": client_cn(self.connection),
                       "http_port": self.server.server_address[1]})
        out = b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class Threaded(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class ThreadedHttp(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--log", required=True)
    p.add_argument("--mllp", type=int, action="append", default=[])
    p.add_argument("--http", type=int, action="append", default=[])
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--slow-ms", type=int, default=3000)
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--tls-client-ca")
    ARGS = p.parse_args()
    global TLS
    if ARGS.tls:
        TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        TLS.load_cert_chain(ARGS.tls[0], ARGS.tls[1])
        if ARGS.tls_client_ca:
            TLS.load_verify_locations(ARGS.tls_client_ca)
            TLS.verify_mode = ssl.CERT_REQUIRED
    servers = []
    for port in ARGS.mllp:
        s = Threaded(("127.0.0.1", port), Mllp)
        servers.append(s)
        print(f"mllp listening on 127.0.0.1:{s.server_address[1]}", flush=True)
    for port in ARGS.http:
        s = ThreadedHttp(("127.0.0.1", port), Http)
        if TLS is not None:
            s.socket = TLS.wrap_socket(s.socket, server_side=True)
        servers.append(s)
        print(f"http listening on 127.0.0.1:{s.server_address[1]}", flush=True)
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A PBM simulator for the pharmacy switch path's tests: an HTTP server that
reads NCPDP D.0 requests (POST, any path) and answers D.0 responses in the
standard's framing. Standard library only.

What it answers is chosen by the cardholder id (302-C2) of the request, so a
test can ask for each case:

  DUR...      paid, with a DUR/PPS segment (E4 = DD) and a message
  REJECT...   rejected with reject codes 75 and 88
  SLOW...     paid, after 3 seconds (past the switch's timeout)
  DOWN...     HTTP 503, no D.0
  GARBAGE...  HTTP 200 with a body that is not D.0
  otherwise   B1/B3 paid (P) with an authorization number, B2 approved (A),
              E1 approved (A)

With --tls CERT KEY CLIENT_CA it speaks HTTPS and requires a client
certificate issued by CLIENT_CA.

GET /count answers the number of D.0 requests received (a switch that
answers duplicates itself does not forward them). Usage:
  pbm_simulator.py [PORT]   (0 or none: any free port; prints
                             "pbm listening on 127.0.0.1:PORT")
"""

import http.server
import socketserver
import sys
import threading
import time

FS, GS, RS = b"\x1c", b"\x1d", b"\x1e"
COUNT = 0
LOCK = threading.Lock()


def parse(body):
    """Header fields and the field values of each segment per group."""
    h = body[:56].decode("ascii", "replace")
    header = {
        "bin": h[0:6], "version": h[6:8], "code": h[8:10], "pcn": h[10:20],
        "count": h[20:21], "qualifier": h[21:23], "provider": h[23:38], "dos": h[38:46],
    }
    groups = body[56:].split(GS)
    parsed = []
    for g in groups:
        segs = {}
        for seg in g.split(RS):
            fields = [f for f in seg.split(FS) if f]
            if not fields or not fields[0].startswith(b"AM"):
                # Simplified framing: "AMnn" may follow the header directly.
                continue
            sid = fields[0][2:4].decode()
            segs[sid] = {f[:2].decode(): f[2:].decode("ascii", "replace") for f in fields[1:]}
        parsed.append(segs)
    return header, parsed


def segment(sid, fields):
    out = RS + FS + b"AM" + sid.encode()
    for k, v in fields:
        out += FS + k.encode() + v.encode()
    return out


def respond(header, groups, statuses, extra=None):
    n = max(1, len(statuses))
    out = ("D0" + header["code"] + str(n) + "A" + header["qualifier"] + header["provider"] + header["dos"]).encode()
    for i, (status, rejects, auth) in enumerate(statuses):
        out += GS
        for seg in (extra or {}).get(i, []):
            out += seg
        fields = [("AN", status)]
        if auth:
            fields.append(("F3", auth))
        if rejects:
            fields.append(("FA", str(len(rejects))))
            fields += [("FB", r) for r in rejects]
        out += segment("21", fields)
    return out


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, code, body, content_type="application/vnd.ncpdp.d0"):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/count":
            self.send(200, str(COUNT).encode(), "text/plain")
        else:
            self.send(404, b"", "text/plain")

    def do_POST(self):
        global COUNT
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with LOCK:
            COUNT += 1
        header, groups = parse(body)
        card = ""
        for g in groups:
            card = card or g.get("04", {}).get("C2", "")
        claims = [g for g in groups if "07" in g] or [{}]
        code = header["code"]
        if card.startswith("DOWN"):
            return self.send(503, b"", "text/plain")
        if card.startswith("GARBAGE"):
            return self.send(200, b"<html>not a D.0 response</html>", "text/html")
        if card.startswith("SLOW"):
            time.sleep(3)
        extra = {}
        if card.startswith("REJECT"):
            statuses = [("R", ["75", "88"], None) for _ in claims]
        elif code in ("B1", "B3"):
            statuses = [("P", [], "AUTH" + g.get("07", {}).get("D2", "")[-6:]) for g in claims]
            if card.startswith("DUR"):
                for i in range(len(claims)):
                    extra[i] = [segment("20", [("F4", "DUR: drug-drug interaction")]),
                                segment("24", [("E4", "DD"), ("8E", "01")])]
        else:
            statuses = [("A", [], None) for _ in claims]
        self.send(200, respond(header, groups, statuses, extra))


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    args = sys.argv[1:]
    tls = None
    if "--tls" in args:
        # --tls CERT KEY CLIENT_CA: HTTPS, and a client certificate from
        # CLIENT_CA is required (a PBM that authenticates its switches).
        i = args.index("--tls")
        tls = args[i + 1:i + 4]
        args = args[:i] + args[i + 4:]
    port = int(args[0]) if args else 0
    server = Server(("127.0.0.1", port), Handler)
    if tls:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls[0], tls[1])
        ctx.load_verify_locations(tls[2])
        ctx.verify_mode = ssl.CERT_REQUIRED
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("pbm listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A TLS client for the TLS tests, with Python's own ssl module (OpenSSL),
so that Clearway's rustls server is checked against an independent TLS
stack. Standard library only.

With TLS_CLIENT_CERT and TLS_CLIENT_KEY set, it presents that client
certificate.

  tls_client.py serial HOST:PORT CA
      prints the server certificate's serial number (hex)
  tls_client.py mllp HOST:PORT CA FILE
      sends FILE as one MLLP frame over TLS, prints the ACK's MSA-1
  tls_client.py mllp-twice HOST:PORT CA FILE WAITFILE
      sends FILE, prints "first <MSA-1>", waits until WAITFILE exists,
      sends it again on the same connection and prints "second <MSA-1>"
      or "second closed"
  tls_client.py keepalive HOST:PORT CA WAITFILE
      opens one TLS connection, GETs /healthz, prints "first <status>",
      waits until WAITFILE exists, GETs /healthz again on the same
      connection and prints "second <status> <serial>"
"""

import os
import socket
import ssl
import sys
import time


def connect(addr, ca):
    host, port = addr.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    # A client certificate, when the test gives one.
    if os.environ.get("TLS_CLIENT_CERT"):
        ctx.load_cert_chain(os.environ["TLS_CLIENT_CERT"], os.environ["TLS_CLIENT_KEY"])
    raw = socket.create_connection((host, int(port)), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def get(s, path):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("closed")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(body) < length:
        body += s.recv(4096)
    return head.split(b" ")[1].decode()


def mllp_send(s, msg):
    """Sends one frame; the ACK's MSA-1, or None when the server closes."""
    s.sendall(b"\x0b" + msg + b"\x1c\r")
    data = b""
    while not data.endswith(b"\x1c\r"):
        chunk = s.recv(4096)
        if not chunk:
            return None
        data += chunk
    for seg in data.strip(b"\x0b\x1c\r").split(b"\r"):
        if seg.startswith(b"MSA"):
            return seg.split(b"|")[1].decode()
    return None


def serial(s):
    return "%X" % int(s.getpeercert()["serialNumber"], 16)


def main():
    mode, addr, ca = sys.argv[1], sys.argv[2], sys.argv[3]
    s = connect(addr, ca)
    if mode == "serial":
        print(serial(s))
    elif mode == "mllp":
        ack = mllp_send(s, open(sys.argv[4], "rb").read())
        if ack is None:
            raise SystemExit("closed without an ACK")
        print(ack)
    elif mode == "mllp-twice":
        msg = open(sys.argv[4], "rb").read()
        print("first", mllp_send(s, msg), flush=True)
        deadline = time.time() + 30
        while not os.path.exists(sys.argv[5]) and time.time() < deadline:
            time.sleep(0.05)
        try:
            ack = mllp_send(s, msg)
        except (ssl.SSLError, OSError):
            ack = None
        print("second", ack or "closed")
    elif mode == "keepalive":
        print("first", get(s, "/healthz"), serial(s), flush=True)
        deadline = time.time() + 30
        while not os.path.exists(sys.argv[4]) and time.time() < deadline:
            time.sleep(0.05)
        print("second", get(s, "/healthz"), serial(s), flush=True)


if __name__ == "__main__":
    main()

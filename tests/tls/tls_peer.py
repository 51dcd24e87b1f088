#!/usr/bin/env python3
"""A TLS peer built on Python's ssl module, for tests/tls/tls_interop_test.cc.

  tls_peer.py server CERT KEY         TLS echo server on 127.0.0.1, a free port;
                                      prints "listening PORT", echoes every
                                      connection's bytes until EOF (until killed).
  tls_peer.py client PORT CA NAME SIZE...
                                      verifies the server (chain and NAME), then
                                      for each SIZE sends SIZE random bytes and
                                      checks the echo byte for byte; prints
                                      "ok VERSION" and exits 0, else exits 1.
"""
import os
import socket
import ssl
import sys
import threading


def serve(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    lsock = socket.create_server(("127.0.0.1", 0))
    print("listening", lsock.getsockname()[1], flush=True)

    def echo(raw):
        try:
            with ctx.wrap_socket(raw, server_side=True) as conn:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    conn.sendall(data)
        except (ssl.SSLError, OSError) as e:
            print("connection:", e, file=sys.stderr, flush=True)

    while True:
        raw, _ = lsock.accept()
        threading.Thread(target=echo, args=(raw,), daemon=True).start()


def client(port, ca, name, sizes):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies chain and host name
    ctx.load_verify_locations(ca)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as conn:
            for size in sizes:
                out = os.urandom(size)
                conn.sendall(out)
                got = bytearray()
                while len(got) < size:
                    chunk = conn.recv(size - len(got))
                    if not chunk:
                        print("EOF after", len(got), "of", size, flush=True)
                        return 1
                    got += chunk
                if bytes(got) != out:
                    print("echo of", size, "bytes differs", flush=True)
                    return 1
            version = conn.version()
            conn.unwrap()  # close_notify, and wait for the server's
    print("ok", version, flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(sys.argv[2], sys.argv[3])
    else:
        try:
            sys.exit(client(int(sys.argv[2]), sys.argv[3], sys.argv[4],
                            [int(s) for s in sys.argv[5:]]))
        except (ssl.SSLError, OSError) as e:
            print("error:", e, flush=True)
            sys.exit(1)

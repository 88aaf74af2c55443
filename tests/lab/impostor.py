"""NOT K3s, and not a stand-in for it: whoever answers on a K3s server's address without being
one (a reassigned IP, a spoofed DNS name, someone on the path). Lab only (issue 18.2).

It answers like a K3s supervisor would (/ping "pong", /cacerts with a CA, anything else 200
with an empty JSON object), but the CA is its own, and it writes down every request it gets
and the credential it carried (the Authorization header) in a log, one JSON line each.

Usage: python3 impostor.py CERT KEY LOG  (listens on 0.0.0.0:6443; CERT is its self-signed CA)
"""

from __future__ import annotations

import http.server
import json
import ssl
import sys


def main(cert: str, key: str, log: str) -> None:
    with open(cert) as f:
        ca = f.read()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode(errors="replace") if length else ""
            with open(log, "a") as f:
                f.write(
                    json.dumps(
                        {"path": self.path, "authorization": self.headers.get("Authorization", ""), "body": body}
                    )
                    + "\n"
                )
            path = self.path.split("?")[0]
            text, kind = (
                ("pong", "text/plain")
                if path == "/ping"
                else (ca, "text/plain")
                if path == "/cacerts"
                else ("{}", "application/json")
            )
            raw = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd = http.server.ThreadingHTTPServer(("0.0.0.0", 6443), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:4])

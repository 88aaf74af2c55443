"""The lab's K3s download mirror: serves the stand-in installer (and nothing else) over HTTPS
from the hub namespace, since K3sBootstrap takes only an https install URL. The hosts trust
its certificate through their own CA bundle (host-init.sh).
Usage (inside the hub namespace): mirror.py DIRECTORY CERT KEY ADDRESS"""

from __future__ import annotations

import functools
import http.server
import ssl
import sys


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main(directory: str, cert: str, key: str, address: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer((address, 443), functools.partial(Quiet, directory=directory))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:5])

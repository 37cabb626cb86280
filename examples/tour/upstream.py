#!/usr/bin/env python3
"""A stand-in payment API for the README's tour, so that the tour runs offline.

Usage: python3 examples/tour/upstream.py [HOST:PORT]     (default 127.0.0.1:8701)

Python 3 standard library only. It listens on a loopback address and answers JSON:

  GET  /health       200 {"status": "ok"}
  POST /v1/charges   201 {"id": "ch_tour_N", "object": "charge", "amount", "currency",
                          "status": "succeeded", "received": <the JSON body sent>}
                     400 when the body is not a JSON object; 413 when it is larger than
                     MAX_BODY_BYTES (64 KiB); 411 without Content-Length
  anything else      404 {"error": "..."}

Each request is logged on standard error. It is a demonstration server, not a payment API:
it keeps nothing, checks no credentials and refuses to listen on a non-loopback address.
Stop it with Ctrl-C or `kill`.
"""

import ipaddress
import itertools
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_ADDRESS = "127.0.0.1:8701"
# Largest request body read, in bytes.
MAX_BODY_BYTES = 64 * 1024

_charge_ids = itertools.count(1)


class Handler(BaseHTTPRequestHandler):
    server_version = "aaf-tour-upstream/1"

    def _answer(self, status, document):
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self._answer(200, {"status": "ok"})
        else:
            self._answer(404, {"error": f"no such path: {self.path}"})

    def do_POST(self):
        if self.path != "/v1/charges":
            self._answer(404, {"error": f"no such path: {self.path}"})
            return
        length = self.headers.get("content-length")
        if length is None or not length.isdigit():
            self._answer(411, {"error": "a Content-Length header is required"})
            return
        if int(length) > MAX_BODY_BYTES:
            self._answer(413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"})
            return
        try:
            received = json.loads(self.rfile.read(int(length)) or b"null")
        except ValueError as error:
            self._answer(400, {"error": f"body is not JSON: {error}"})
            return
        if not isinstance(received, dict):
            self._answer(400, {"error": "body must be a JSON object"})
            return
        self._answer(
            201,
            {
                "id": f"ch_tour_{next(_charge_ids)}",
                "object": "charge",
                "amount": received.get("amount"),
                "currency": received.get("currency", "usd"),
                "status": "succeeded",
                "received": received,
            },
        )


def main():
    address = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_ADDRESS
    host, _, port = address.rpartition(":")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback or not port.isdigit():
        sys.exit(f"upstream.py: {address!r} is not a loopback HOST:PORT such as {DEFAULT_ADDRESS}")
    server = ThreadingHTTPServer((host, int(port)), Handler)
    print(f"tour upstream listening on http://{address}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

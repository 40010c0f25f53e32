#!/usr/bin/env python3
"""A webhook receiver written as a subscriber would write one, with the Standard Webhooks
reference package (PyPI `standardwebhooks`), for the webhook tests.

    webhook_receiver.py PORT

POST /hook        a delivery: verified with the configured secret; a webhook-id already
                  processed is a replay and is not processed again (acknowledged, logged
                  "replay"); answers 500 while configured to fail.
POST /configure   {"secret": "whsec_…", "fail": false}
POST /check       {"secret", "headers", "body", "shift_seconds"}: verifies a delivery as the
                  package would at now + shift (a replay captured and sent later).
GET  /log         every delivery received, with its result.
"""

import json
import sys
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import standardwebhooks.webhooks as swh
from standardwebhooks import Webhook


class Shifted(datetime):
    """The package's clock, moved forward to check what a late replay meets."""

    shift = timedelta(0)

    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + cls.shift


swh.datetime = Shifted
LOCK = threading.Lock()
STATE = {"secret": None, "fail": False, "seen": set(), "log": []}


def verify(secret, body, headers, shift=0):
    Shifted.shift = timedelta(seconds=shift)
    try:
        Webhook(secret).verify(body, headers)
        return "ok"
    except Exception as e:  # the package's refusals: WebhookVerificationError and friends
        return "refused: " + str(e)
    finally:
        Shifted.shift = timedelta(0)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with LOCK:
            self.answer(200, STATE["log"])

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path == "/configure":
            with LOCK:
                STATE.update(json.loads(body))
            return self.answer(200, {})
        if self.path == "/check":
            req = json.loads(body)
            with LOCK:
                result = verify(req["secret"], req["body"].encode(), req["headers"], req.get("shift_seconds", 0))
            return self.answer(200, {"result": result})
        headers = {k.lower(): v for k, v in self.headers.items()}
        entry = {
            "id": headers.get("webhook-id"),
            "headers": {k: v for k, v in headers.items() if k.startswith("webhook-")},
            "body": body.decode(),
        }
        with LOCK:
            if STATE["fail"]:
                entry["result"] = "failed on purpose"
                status = 500
            else:
                entry["result"] = verify(STATE["secret"], body, headers)
                status = 200 if entry["result"] == "ok" else 400
                if status == 200:
                    if entry["id"] in STATE["seen"]:
                        entry["result"] = "replay"
                    STATE["seen"].add(entry["id"])
            STATE["log"].append(entry)
        self.answer(status, {"result": entry["result"]})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

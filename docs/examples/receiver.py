"""A vidgen webhook receiver: verifies the signature (v1) with `standardwebhooks`, handles
each webhook-id once, answers 2xx fast. Serve it behind your HTTPS proxy.

    pip install standardwebhooks
    WEBHOOK_SECRET=whsec_... PORT=8080 python receiver.py
"""

import os
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

hook, seen = Webhook(os.environ["WEBHOOK_SECRET"]), set()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        try:  # the signature over id.timestamp.body, and a timestamp within 5 minutes
            event = hook.verify(body, dict(self.headers))
        except WebhookVerificationError:
            self.send_response(401)
        else:
            if self.headers["webhook-id"] not in seen:  # a retry repeats the id: once only
                seen.add(self.headers["webhook-id"])
                print(event["type"], event["data"].get("generationId", "-"), flush=True)
            self.send_response(204)
        self.end_headers()


HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), Receiver).serve_forever()

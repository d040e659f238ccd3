"""A webhook receiver that writes each notification to a local log file.

Why: the demo (``topup up --sim``) has no chat server, yet an operator should see the
notifications the Prefect automations send (deployments/notifications.py). This small
process stands in for the chat webhook: every POST is appended to the log file as one JSON
line, and ``GET /health`` answers 200 so that the supervisor can check it.

    python -m topup_cli.notify_receiver --port 5055 --log var/logs/notifications.log
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAX_BODY = 256 * 1024  # a notification is a few hundred bytes; refuse anything huge
PATH = "/notify"


def make_server(host: str, port: int, log_file: Path) -> ThreadingHTTPServer:
    """A server on ``host:port`` appending every POST to ``log_file`` (one JSON line each)."""
    lock = threading.Lock()
    log_file.parent.mkdir(parents=True, exist_ok=True)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._answer(200 if self.path == "/health" else 404)

        def do_POST(self) -> None:  # noqa: N802
            self._receive()

        def do_PUT(self) -> None:  # noqa: N802 (the block may be set to PUT)
            self._receive()

        def _receive(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != PATH or length > MAX_BODY:
                self._answer(404 if self.path != PATH else 413)
                return
            raw = self.rfile.read(length)
            body: Any
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            entry = {"received_at": datetime.now(UTC).isoformat(), "notification": body}
            with lock, open(log_file, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self._answer(200)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # the log file holds the notifications; request lines would only be noise

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write webhook notifications to a log file")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, args.log)
    print(f"notifications to {args.log} on http://{args.host}:{args.port}{PATH}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

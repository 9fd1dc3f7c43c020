"""A real HTTP server on loopback that speaks the OpenAI chat-completions protocol, scripted per test.

`script` is a callable(request_number, request_json) -> (status, payload, headers), where the payload is
- a str: the assistant content of a well-formed completion;
- a dict or list: that JSON body, as is (`choices: []`, `choices: null`, a choice without `message`...);
- `Raw(body, content_type)`: those bytes (invalid JSON, an HTML error page);
- `HANG`: never answer (until the server shuts down), for timeouts;
- `RESET`: close the connection without an answer.
The server records every request and the highest number of requests in flight at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, Any, dict[str, str]]


@dataclass(frozen=True)
class Raw:
    """A body sent byte for byte (not JSON-encoded)."""

    body: bytes | str
    content_type: str = "application/json"


HANG = object()
RESET = object()


def completion(content: str, model: str = "test-model") -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


class ChatServer:
    def __init__(self, script: Callable[[int, dict[str, Any]], Reply], delay: float = 0.0) -> None:
        self.script = script
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    n = len(server.requests)
                    server.requests.append(body)
                    server.headers.append(dict(self.headers))
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    if server.delay:
                        time.sleep(server.delay)
                    status, payload, headers = server.script(n, body)
                    if payload is HANG:
                        server._stop.wait(60)
                        return
                    if payload is RESET:
                        self.close_connection = True
                        self.connection.close()
                        return
                    content_type = "application/json"
                    if isinstance(payload, Raw):
                        content_type = payload.content_type
                        data = payload.body.encode() if isinstance(payload.body, str) else payload.body
                    else:
                        if isinstance(payload, str):
                            payload = completion(payload, body.get("model", "test-model"))
                        data = json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("content-type", content_type)
                    self.send_header("content-length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    with server._lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()  # wakes HANG handlers
        self.httpd.shutdown()
        self.httpd.server_close()


def error(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": "error", "code": code}}

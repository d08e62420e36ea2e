"""A scripted OpenAI-compatible chat-completions server for judge tests (the real judges are
not reachable here): a real HTTP server on a free port, in a thread.

Each request is answered by `script(request_json, call_number)`, which returns a `Reply`:
status, body (a dict sent as JSON, or raw text), headers, and a delay before answering. Every
request body is kept in `requests`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def completion(
    content: str, prompt_tokens: int = 100, completion_tokens: int = 20, finish_reason: str = "stop"
) -> Reply:
    """A successful chat completion whose message content is `content` ("length": cut at the limit)."""
    return Reply(
        body={
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "scripted",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


def spans_reply(spans: list[dict[str, Any]], **usage: int) -> Reply:
    """A completion whose content is the judge schema's JSON with these spans."""
    full = [{"occurrence": 0, "note": "", "evidence": [], **s} for s in spans]
    return completion(json.dumps({"spans": full}), **usage)


def error(status: int, headers: dict[str, str] | None = None, **fields: str) -> Reply:
    """An error in OpenAI's shape; `fields` adds `param`, `code` or a `message`."""
    return Reply(
        status=status,
        body={"error": {"message": f"scripted {status}", "type": "test", **fields}},
        headers=headers or {},
    )


class ScriptedJudge:
    def __init__(self, script: Callable[[dict[str, Any], int], Reply]) -> None:
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.times: list[float] = []
        self._lock = threading.Lock()
        self.url = ""

    @property
    def calls(self) -> int:
        return len(self.requests)

    def answer(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(body)
            self.times.append(time.monotonic())
            number = len(self.requests)
        return self.script(body, number)


def answer_of(request: dict[str, Any]) -> str:
    """The answer text a judge request asks about (from the user message the run builds)."""
    content = request["messages"][1]["content"]
    after = content.split("ANSWER TO LABEL:\n", 1)[1]
    return after.split("\n\nEVIDENCE PASSAGES", 1)[0].split("\n\nNo reference passages", 1)[0]


@contextmanager
def scripted_judge(script: Callable[[dict[str, Any], int], Reply]) -> Iterator[ScriptedJudge]:
    """Serve `script` on 127.0.0.1 (a free port) until the block ends; `.url` is the base URL."""
    judge = ScriptedJudge(script)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:  # quiet
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            reply = judge.answer(body)
            if reply.delay:
                time.sleep(reply.delay)
            data = reply.body if isinstance(reply.body, str | bytes) else json.dumps(reply.body)
            raw = data.encode("utf-8") if isinstance(data, str) else data
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="scripted-judge", daemon=True)
    thread.start()
    judge.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield judge
    finally:
        server.shutdown()
        server.server_close()

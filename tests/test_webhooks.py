"""Webhooks on save and gold, against a real HTTP server on 127.0.0.1: the JSON arrives after the
commit; a dead or failing receiver is logged and never fails or delays the save."""

from __future__ import annotations

import json
import logging
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.base.errors import UserError
from core.base.types import Span
from core.orchestration.actions import annotate, review
from tests.support.actions import team_on


class _Receiver(BaseHTTPRequestHandler):
    received: queue.Queue
    status = 204

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.put((self.path, self.headers["Content-Type"], json.loads(body)))
        self.send_response(self.status)
        self.end_headers()

    def log_message(self, *_args) -> None:
        return


@pytest.fixture()
def receiver():
    handler = type("Handler", (_Receiver,), {"received": queue.Queue()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, handler
    server.shutdown()
    server.server_close()


@pytest.fixture()
def team(tmp_path):
    made = team_on(tmp_path)
    yield made
    made.storage.dispose()


def _url(server, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def test_an_annotation_save_and_a_gold_save_post_json_after_the_commit(team, receiver, monkeypatch):
    server, handler = receiver
    monkeypatch.setenv("PROBELENS_WEBHOOK_URLS", f"{_url(server, '/one')}, {_url(server, '/two')}")
    answer = team.ids[0]
    saved = annotate.save_annotation(team.storage, team.actors["ann"], answer, [Span(0, 4, "Not Supported")], 0)
    assert isinstance(saved, annotate.Saved)
    got = [handler.received.get(timeout=10) for _ in range(2)]
    assert sorted(path for path, _, _ in got) == ["/one", "/two"]
    path, content_type, body = got[0]
    assert content_type == "application/json"
    assert body["event"] == "annotation.save" and body["generation_id"] == answer and body["user"] == "ann"
    assert body["version"] == saved.version == 1
    assert body["spans"] == [{"start": 0, "end": 4, "label": "Not Supported"}] and body["at"]
    # a stale save is a conflict: nothing saved, nothing posted
    assert isinstance(annotate.save_annotation(team.storage, team.actors["ann"], answer, [], 0), annotate.Conflict)
    assert review.save_merged_gold(team.storage, team.actors["rita"], answer, [Span(0, 4, "Supported")], 0) == 1
    gold = [handler.received.get(timeout=10)[2] for _ in range(2)]
    assert all(g["event"] == "gold.save" and g["version"] == 1 and g["user"] == "rita" for g in gold)
    assert gold[0]["spans"] == [{"start": 0, "end": 4, "label": "Supported"}] and gold[0]["how"] == "merge"
    assert handler.received.empty()  # the conflict posted nothing


def test_a_dead_or_failing_receiver_never_fails_the_save(team, receiver, monkeypatch, caplog):
    server, handler = receiver
    handler.status = 500
    monkeypatch.setenv("PROBELENS_WEBHOOK_URLS", f"{_dead_url()} {_url(server, '/x?token=secret')}")
    with caplog.at_level(logging.WARNING, logger="core.orchestration.webhooks"):
        saved = annotate.save_annotation(team.storage, team.actors["ann"], team.ids[1], [Span(0, 5, "Supported")], 0)
        assert isinstance(saved, annotate.Saved) and saved.version == 1
        assert handler.received.get(timeout=10)[2]["event"] == "annotation.save"  # the live one still got it
        for _ in range(100):
            if len([r for r in caplog.records if "failed" in r.getMessage()]) >= 2:
                break
            threading.Event().wait(0.1)
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 2 and not any("secret" in m for m in failures)  # host only, never the query
    # the save is stored: the set reads back at version 1
    assert annotate.save_annotation(team.storage, team.actors["ann"], team.ids[1], [], 1).version == 2


def test_a_bad_setting_is_one_message_and_saves_still_work(team, monkeypatch, caplog):
    from core.base import settings

    monkeypatch.setenv("PROBELENS_WEBHOOK_URLS", "file:///etc/passwd")
    with pytest.raises(UserError, match="not an http"):
        settings.webhook_urls()
    with caplog.at_level(logging.WARNING, logger="core.orchestration.webhooks"):
        saved = annotate.save_annotation(team.storage, team.actors["ann"], team.ids[0], [], 0)
    assert isinstance(saved, annotate.Saved)
    assert any("webhooks off" in r.getMessage() for r in caplog.records)


def _dead_url() -> str:
    """A URL on 127.0.0.1 whose port nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"

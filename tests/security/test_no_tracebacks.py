"""Finding 8: no traceback or server path reaches the browser; one clear message, details in the log."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.support.apptest import add_users, sign_in

ROOT = Path(__file__).resolve().parents[2]


def test_streamlit_is_told_to_show_no_error_details():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"


def test_an_unexpected_error_in_a_page_shows_one_message_and_no_traceback(app_database, monkeypatch, caplog):
    import pages.common

    add_users(app_database, ("boss", "boss-password", "admin"), ("ann", "ann-password", "annotator"))

    def broken(*_args, **_kwargs):
        raise RuntimeError("secret detail at /srv/probelens/db.sqlite")

    monkeypatch.setattr(pages.common, "active_probe", broken)
    at = sign_in("ann", "ann-password")  # lands on the Generate page, which asks for the probe
    assert not at.exception
    shown = " ".join(e.value for e in at.error)
    assert "Something went wrong on this page" in shown and "incident" in shown
    assert "secret" not in shown and "/srv" not in shown and "Traceback" not in shown
    assert "secret detail" in caplog.text, "the details are in the server log"


@pytest.mark.parametrize("link", ["99999", "12345678901234567890123", "-1", "abc"])
def test_a_link_to_no_answer_gives_one_warning(app_database, link):
    add_users(app_database, ("boss", "boss-password", "admin"), ("ann", "ann-password", "annotator"))
    at = sign_in("ann", "ann-password")
    at.query_params["generation"] = link
    at.switch_page("pages/annotate.py")
    at.run()
    assert not at.exception
    assert any("names no stored answer" in w.value for w in at.warning)

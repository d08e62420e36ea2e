"""Issue #22, minor: an image in the guidelines loads only from the app itself.

The guidelines are an admin's markdown; `![x](https://tracker.example/p.png)` in them loaded in
every annotator's browser (a tracking pixel). The rendered markdown is parsed here with a
CommonMark parser (markdown-it, as a browser-side renderer would read it) and every image
source it would load is collected; the page is driven with AppTest.
"""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt

from core.text.markdown import app_images_only
from tests.support.apptest import add_users, sign_in

REMOTE = [
    "![pixel](https://tracker.example/p.png)",
    "![pixel](http://127.0.0.1:9/t.png 'title')",
    "![pixel](//tracker.example/p.png)",
    "![pixel](/\\tracker.example/p.png)",
    "![pixel](HTTPS\\://tracker.example/p.png)",
    "![pixel](<\tht\ttps://tracker.example/p.png>)",
    "![pixel](h&#116;tps://tracker.example/p.png)",
    "![pixel][ref]\n\n[ref]: https://tracker.example/p.png",
    "![ref]\n\n[ref]: https://tracker.example/p.png",
    "[![pixel](https://tracker.example/p.png)](/annotate)",
    "![a ![b](https://tracker.example/p.png) c](https://tracker.example/q.png)",
    "* ![pixel](https://tracker.example/p.png)\n> ![q](https://tracker.example/q.png)",
]
LOCAL = ["![logo](/app/static/logo.png)", '![chart](static/chart.png "Chart")', "![x](<img/a b.png>)"]


def image_sources(markdown: str) -> list[str]:
    """Every image source a CommonMark renderer makes of `markdown`."""
    found: list[str] = []
    pending = list(MarkdownIt("commonmark").parse(markdown))
    while pending:
        token = pending.pop()
        if token.type == "image":
            found.append(str(token.attrs.get("src", "")))
        pending.extend(token.children or [])
    return found


@pytest.mark.parametrize("body", REMOTE)
def test_no_image_from_another_host_is_left(body):
    assert image_sources(body), "the attack must be an image to begin with"
    shown = app_images_only(body)
    assert all(not re.match(r"(?i)[a-z][a-z0-9+.-]*:|//", s) for s in image_sources(shown)), shown
    assert "tracker.example" not in " ".join(image_sources(shown))


@pytest.mark.parametrize("body", LOCAL)
def test_images_of_the_app_itself_stay(body):
    assert app_images_only(body) == body and image_sources(body)


def test_text_without_images_is_unchanged():
    body = "# Rules\n\nMark **dates** [and links](https://example.org) ! [not an image] \\![x](y)\n"
    assert app_images_only(body) == body


def test_the_annotate_page_shows_no_remote_image(app_database):
    from db.guidelines import save
    from db.users import get_user

    add_users(app_database, ("boss", "boss-password", "admin"), ("bea", "bea-password", "annotator"))
    body = "# Rules\n\n![pixel](https://tracker.example/p.png)\n\n![logo](/app/static/logo.png)"
    with app_database.sessions() as session, session.begin():
        save(session, body, actor=get_user(session, "boss"), expected_version=0)
    at = sign_in("bea", "bea-password", "pages/annotate.py")
    panel = next(e for e in at.expander if e.label == "Guidelines (v1)")
    shown = [m.value for m in panel.markdown if "Rules" in m.value]
    assert shown and image_sources(shown[0]) == ["/app/static/logo.png"], shown

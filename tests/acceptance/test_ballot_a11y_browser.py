"""The voting page in real Chromium on a phone: in Chinese (lang="zh-CN"), every control labelled, the
questions grouped with legends, no inline script or handler (the page CSP allows scripts from 'self'
only, and Chromium reports no violation), and a refusal takes the focus so a screen reader reads it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from states.base import Stage
from tests.acceptance.conftest import Server, Site
from tests.support.world import GB_SEC, at
from workflow import ballots, service

pytestmark = pytest.mark.slow

UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), textarea, select')]
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.name)"""


def _no_inline_script(html: str) -> None:
    assert not re.search(r"<script(?![^>]*\bsrc=)", html, flags=re.IGNORECASE)
    assert not re.search(r"\son[a-z]+\s*=", html, flags=re.IGNORECASE)
    assert "javascript:" not in html.lower()


def test_the_voting_page_is_labelled_grouped_script_free_and_focuses_a_refusal(
        live: tuple[Site, Server], phone: Any) -> None:
    site, server = live
    site.world.drive("B1", Stage.member_evaluation)
    site.clock.now = at(4, 10, 9)
    with site.world.sessions() as s, s.begin():
        gb = service.actor_for(s, GB_SEC)
        b = ballots.open_ballot(s, "B1", gb, closes_at=at(4, 15, 18), now=at(4, 10, 9))
        code = ballots.issue_codes(s, b.id, gb, 1, now=at(4, 10, 9))[0].shown
    violations: list[str] = []
    phone.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)

    for path in ("/v", f"/v/{code}"):
        r = phone.goto(f"{server.url}{path}")
        assert r.status == 200
        _no_inline_script(phone.content())
        assert phone.evaluate("document.documentElement.lang") == "zh-CN"
        assert phone.evaluate(UNLABELLED) == []
    assert phone.get_by_role("group").count() == 4  # four questions, each a fieldset with its legend
    assert phone.get_by_role("group", name="4. 意见和建议（选填）").get_by_role("textbox").count() == 1
    assert phone.evaluate("document.activeElement === document.body")  # nothing to announce: no focus jump

    phone.goto(f"{server.url}/v/{'2' * 20}")  # an unknown code
    alert = phone.get_by_role("alert")
    assert "测评码无效" in alert.inner_text()
    assert phone.evaluate("document.activeElement && document.activeElement.id") == "vote-error"
    assert phone.evaluate(UNLABELLED) == []  # the code field to try again is labelled too
    _no_inline_script(phone.content())
    assert violations == []

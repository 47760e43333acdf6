"""Security headers on every response (OWASP ASVS V14.4), on SQLite and PostgreSQL: every route of the app
— walked from the app itself, so a new one is covered without editing this test — logged in and not, GET
and POST, answers with a strict Content-Security-Policy, ``X-Frame-Options: DENY``, ``nosniff``, a
``Referrer-Policy``, and ``Strict-Transport-Security`` only over HTTPS; no page carries an inline script,
style attribute or event handler the policy would block."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.security import DOCS_PAGES, FILE_CSP, PAGE_CSP
from states.base import Stage
from tests.acceptance.conftest import Site
from tests.acceptance.test_access_both_ways import walk
from tests.acceptance.test_web import browser

INLINE = [re.compile(p, re.IGNORECASE) for p in (r"<script(?![^>]*\bsrc=)[^>]*>", r"\sstyle\s*=", r"\son[a-z]+\s*=",
                                         r"javascript:")]
FILL = {"code": "B1", "file": "overview.html", "fmt": "json", "ballot_id": "1", "item": "1", "objection_id": "1",
        "name": "overview", "token": "X"}


def paths(site: Site) -> list[tuple[str, str]]:
    """(method, path) of every route (walked as the access-control test walks them), parameters filled in."""
    out: list[tuple[str, str]] = []
    for method, path in walk(site.app):
        if method == "MOUNT":
            out += [("GET", path + "/app.css"), ("GET", path + "/no-such.css")]
            continue
        out.append((method, re.sub(r"\{([a-z_]+)(?::[a-z]+)?\}", lambda m: FILL.get(m.group(1), "B1"), path)))
    out += [("GET", "/no-such-page"), ("GET", "/api/no-such-endpoint"), ("GET", "/reports/summary.csv")]
    return out


def check(r: Any, https: bool) -> None:
    h = r.headers
    where = f"{r.request.method} {r.request.url.path} → {r.status_code}"
    csp = h.get("content-security-policy", "")
    if r.request.url.path in DOCS_PAGES:
        assert "script-src https://cdn.jsdelivr.net 'sha256-" in csp and "'unsafe-inline'" not in csp, where
    else:
        assert csp in (PAGE_CSP, FILE_CSP), where
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp and "base-uri 'none'" in csp, where
    assert h.get("x-frame-options") == "DENY", where
    assert h.get("x-content-type-options") == "nosniff", where
    assert h.get("referrer-policy") == "same-origin", where
    assert ("strict-transport-security" in h) is https, where
    if "content-disposition" in h:
        assert csp == FILE_CSP, where  # downloads: nothing runs, sandboxed
    if h.get("content-type", "").startswith("text/html") and csp == PAGE_CSP:
        for pat in INLINE:
            assert not pat.search(r.text), f"{where}: {pat.pattern} in the page"


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_every_route_answers_with_the_security_headers(site: Site, https: bool) -> None:
    site.world.drive("B1", Stage.publicity)
    base = "https://testserver" if https else "http://testserver"
    anonymous = TestClient(site.app, base_url=base)
    org = browser(site, "org")
    logged_in = TestClient(site.app, base_url=base, cookies=dict(org.cookies.items()))
    bearer = {"Authorization": f"Bearer {site.token('org')}"}
    seen = 0
    for method, path in paths(site):
        for client, headers in ((anonymous, {}), (logged_in, bearer)):
            r = client.request(method, path, headers=headers, follow_redirects=False)
            check(r, https)
            seen += 1
    assert seen > 100  # every page, API endpoint and static file, twice


def test_the_pages_people_use_are_covered_with_their_content(site: Site) -> None:
    site.world.drive("B1", Stage.committee_grading)
    c = browser(site, "org")
    for path in ("/", "/dashboard", "/branches", "/branches/B1", "/committee", "/publicity", "/audit", "/reports",
                 "/login"):
        r = c.get(path)
        assert r.status_code == 200 and r.headers["content-security-policy"] == PAGE_CSP, path
        check(r, False)

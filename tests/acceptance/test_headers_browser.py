"""Real Chromium under the Content-Security-Policy: the main pages work with no policy violation (log-in →
to-do → branch page → a form → dashboard, committee, publicity, audit, reports), the dashboard's bars keep
their widths without inline styles, and the committee's sign-off page cannot be framed by another page."""

from __future__ import annotations

from typing import Any

import pytest

from states.base import Stage
from tests.acceptance.conftest import PASSWORD, Server, Site
from tests.support.world import ORG, at

pytestmark = pytest.mark.slow


def watch(page: Any) -> list[str]:
    """Every CSP violation the page reports (the DOM event and the console line)."""
    seen: list[str] = []
    page.on("console", lambda m: seen.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: seen.append(str(e)))
    page.add_init_script("document.addEventListener('securitypolicyviolation', e => "
                         "console.error('Content Security Policy violation: ' + e.violatedDirective))")
    return seen


def test_the_main_pages_work_under_the_policy(live: tuple[Site, Server], phone: Any) -> None:
    site, server = live
    site.world.drive("B1", Stage.committee_grading)
    site.clock.now = at(4, 20, 9)
    violations = watch(phone)
    phone.goto(f"{server.url}/branches/B1")
    phone.wait_for_url(f"{server.url}/login?next=/branches/B1")
    phone.get_by_label("邮箱").fill(ORG)
    phone.get_by_label("密码").fill(PASSWORD)
    phone.get_by_role("button", name="登录").click()
    phone.wait_for_url(f"{server.url}/branches/B1")
    assert "党委评定" in phone.locator("main").inner_text()
    phone.get_by_role("button", name="计算得分和等级").first.click()
    notice = phone.locator("p.notice")
    notice.wait_for()
    assert "已计算：总分" in notice.inner_text() and phone.url.endswith("?ok=done#top")  # kept in the session
    phone.goto(f"{server.url}/")
    assert "待办事项" in phone.locator("main").inner_text()
    phone.goto(f"{server.url}/dashboard")
    widths = phone.eval_on_selector_all(".bars .fill", "els => els.map(e => e.getBoundingClientRect().width)")
    assert widths and max(widths) > 50  # the widths come from classes in app.css, not style attributes
    for path, word in (("/committee", "签字"), ("/publicity", "公示"), ("/audit", "审计"), ("/reports", "报表")):
        phone.goto(server.url + path)
        assert word in phone.locator("body").inner_text(), path
    assert phone.evaluate("getComputedStyle(document.body).fontFamily")  # the stylesheet applied
    assert violations == []


def test_the_sign_off_page_cannot_be_framed(live: tuple[Site, Server], chromium: Any) -> None:
    site, server = live
    ctx = chromium.new_context()
    page = ctx.new_page()
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    cookie = site.page_client("m1").cookies
    ctx.add_cookies([{"name": k, "value": v, "url": server.url} for k, v in cookie.items()])
    direct = page.goto(f"{server.url}/committee")
    assert direct is not None and direct.status == 200 and "签字" in page.locator("body").inner_text()
    page.set_content(f'<h1>另一个网站</h1><iframe id="f" src="{server.url}/committee" width="400" height="300"></iframe>')
    page.wait_for_timeout(1500)
    child = [f for f in page.frames if f != page.main_frame]
    assert [f.url for f in child] == ["chrome-error://chromewebdata/"]  # Chromium refused to show it
    assert "签字" not in page.frame_locator("#f").locator("body").inner_text(timeout=3000)
    assert any("violates the following Content Security Policy directive: \"frame-ancestors 'none'\"" in m
               for m in messages), messages
    ctx.close()

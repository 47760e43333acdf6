"""Server-side sessions and API tokens (OWASP ASVS V3) over HTTP, on SQLite and PostgreSQL: logging out, a
password change, a role change and the organisation department's "end all sessions" take effect at the
very next request; idle and absolute timeouts; tokens listed, named, expiring and revoked at once; the
CSRF token bound to the session; ``?ok=`` shows no text from the URL; ``Secure`` cookies over HTTPS."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient
from sqlalchemy import text

from service.auth import SESSION_COOKIE, set_password
from states.base import Role
from tests.acceptance.conftest import PASSWORD, Site
from tests.acceptance.test_auth_login import Wall, bf
from tests.acceptance.test_web import browser, csrf_of, text_of
from workflow.people import add_person


def _wall(site: Site) -> Wall:
    return Wall(site)


def logged_out(c: TestClient, path: str = "/") -> bool:
    r = c.get(path, follow_redirects=False)
    return r.status_code == 303 and r.headers["location"].startswith("/login")


def test_logging_out_ends_the_session_on_the_server_at_once(site: Site) -> None:
    _wall(site)
    c = browser(site, "sec1")
    cookie = c.cookies[SESSION_COOKIE]
    assert c.get("/").status_code == 200
    r = c.post("/logout", data={"csrf": csrf_of(c.get("/").text)}, follow_redirects=False)
    assert r.headers["location"] == "/login?ok=logged_out"
    assert "您已退出登录" in text_of(c.get("/login?ok=logged_out").text)
    thief = TestClient(site.app, base_url="http://testserver")
    thief.cookies.set(SESSION_COOKIE, cookie)  # the old cookie, kept by someone
    assert logged_out(thief)
    with site.world.sessions() as s:  # only the digest is stored
        stored = repr(s.execute(text("SELECT * FROM web_sessions")).all())
    assert cookie not in stored


def test_a_password_change_ends_every_session_and_token(site: Site) -> None:
    _wall(site)
    c = browser(site, "sec1")
    tok = site.token("sec1")
    with site.world.sessions() as s, s.begin():
        set_password(s, "sec1@test.cn", "a-new-passphrase-2026")
    assert logged_out(c)
    r = site.client.get("/api/me", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 401 and r.json()["message"] == "密码已更改，请重新登录"


def test_a_role_change_ends_the_session_at_the_next_request(site: Site) -> None:
    _wall(site)
    c = browser(site, "sec1")
    tok = site.token("sec1")
    with site.world.sessions() as s, s.begin():
        add_person(s, "sec1@test.cn", "书记甲", [Role.branch_secretary], "B2")
    assert logged_out(c)
    r = site.client.get("/api/me", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 401 and r.json()["message"] == "角色已变更，请重新登录"
    assert browser(site, "sec1").get("/").status_code == 200  # logging in again works


def test_the_organisation_department_ends_all_sessions_and_tokens_of_a_person(site: Site) -> None:
    _wall(site)
    c1, c2 = browser(site, "gb1"), browser(site, "gb1")
    tok = site.token("gb1")
    run = bf(site)
    listed = run("user", "sessions", "gb1@test.cn").stdout
    assert listed.count("gb1@test.cn") == 2 and "testclient" in listed
    r = run("user", "logout-all", "gb1@test.cn", "--as", "gb1@test.cn", code=4)
    assert "须为组织部" in r.stderr and not logged_out(c1)
    assert "已结束 gb1@test.cn 的 2 个登录会话，撤销 1 个 API 令牌" in run("user", "logout-all", "gb1@test.cn",
                                                                     "--as", "org@test.cn").stdout
    assert logged_out(c1) and logged_out(c2)
    r = site.client.get("/api/me", headers={"Authorization": f"Bearer {tok}"})
    assert r.status_code == 401 and "管理员已结束您的全部会话" in r.json()["message"]


def test_idle_and_absolute_timeouts(site: Site) -> None:
    wall = _wall(site)
    c = browser(site, "sec1")
    wall.pass_(minutes=29)
    assert c.get("/").status_code == 200  # used within 30 minutes: still on
    wall.pass_(minutes=31)
    assert logged_out(c)  # idle for 31 minutes
    c = browser(site, "sec1")
    start = wall.now
    while not logged_out(c):  # busy all day, a page every 20 minutes
        wall.pass_(minutes=20)
        assert wall.now - start <= dt.timedelta(hours=13), "the session outlived the 12-hour limit"
    assert wall.now - start > dt.timedelta(hours=12)  # not before the limit
    with site.world.sessions() as s:
        reasons = s.execute(text("SELECT end_reason FROM web_sessions WHERE end_reason IS NOT NULL")).scalars().all()
    assert sorted(reasons) == ["absolute", "idle"]


def test_api_tokens_are_named_listed_expire_and_are_revoked_at_once(site: Site) -> None:
    wall = _wall(site)
    r = site.client.post("/api/token", json={"email": "org@test.cn", "password": PASSWORD})
    short = r.json()["access_token"]
    assert r.json()["expires_in"] == 24 * 3600
    run = bf(site)
    long_ = run("user", "token", "org@test.cn", "--days", "90", "--name", "学校数据中心").stdout.strip()
    hdr = {"Authorization": f"Bearer {long_}"}
    assert site.client.get("/api/me", headers=hdr).status_code == 200
    listed = run("user", "tokens", "org@test.cn").stdout
    assert "学校数据中心" in listed and "登录令牌（POST /api/token）" in listed and listed.count("有效") == 2
    assert long_ not in listed and short not in listed  # never shown again
    wall.pass_(hours=25)
    r = site.client.get("/api/me", headers={"Authorization": f"Bearer {short}"})
    assert r.status_code == 401 and r.json()["message"] == "令牌已过期，请重新取得令牌"
    assert site.client.get("/api/me", headers=hdr).status_code == 200
    token_id = next(ln.split()[0][1:] for ln in listed.splitlines() if "学校数据中心" in ln)
    assert "已撤销令牌" in run("user", "token-revoke", token_id, "--as", "org@test.cn").stdout
    r = site.client.get("/api/me", headers=hdr)
    assert r.status_code == 401 and r.json()["message"] == "令牌已被撤销"


def test_a_csrf_token_from_another_session_is_refused(site: Site) -> None:
    _wall(site)
    a, b = browser(site, "sec1"), browser(site, "sec1")
    token_a = csrf_of(a.get("/").text)
    r = b.post("/logout", data={"csrf": token_a}, follow_redirects=False)
    assert r.status_code == 403 and "CSRF" in text_of(r.text)
    assert not logged_out(b)
    assert b.post("/logout", data={"csrf": csrf_of(b.get("/").text)}, follow_redirects=False).status_code == 303


def test_the_site_notice_never_shows_text_from_the_address(site: Site) -> None:
    _wall(site)
    c = browser(site, "sec1")
    page = c.get("/?ok=" + "您的账号已被冻结，请致电 400-000-0000").text
    assert "冻结" not in page and 'class="notice"' not in page
    assert 'class="notice"' not in c.get("/?ok=done").text  # nothing waiting in the session


def test_cookies_are_secure_over_https_or_when_the_setting_forces_it(site: Site) -> None:
    _wall(site)
    for base, secure in (("http://testserver", False), ("https://testserver", True)):
        c = TestClient(site.app, base_url=base)
        page = c.get("/login")
        assert ("secure" in page.headers["set-cookie"].lower()) is secure
        r = c.post("/login", data={"csrf": csrf_of(page.text), "email": "sec1@test.cn", "password": PASSWORD,
                                   "next": "/"}, follow_redirects=False)
        cookie = r.headers["set-cookie"].lower()
        assert cookie.startswith("bf_session=") and ("; secure" in cookie) is secure
    site.app.state.runtime.settings.cookie_secure = True
    try:
        r = TestClient(site.app, base_url="http://testserver").get("/login")
        assert "; secure" in r.headers["set-cookie"].lower()
    finally:
        site.app.state.runtime.settings.cookie_secure = False

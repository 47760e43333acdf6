"""Log-in (OWASP ASVS V2) over HTTP, on SQLite and PostgreSQL: growing waits per account and per client
address answered at once with 429 and a Chinese Retry-After message, a temporary lockout that even the
right password cannot pass and that the organisation department lifts on the command line, the record of
every attempt an auditor reads (never the password), password rules, argon2 rehash."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, text

from service import passwords, throttle
from tests.acceptance.conftest import PASSWORD, Site
from workflow.models import Person

ROOT = Path(__file__).resolve().parents[2]


class Wall:
    """The signer's real clock, moved by the test (throttling and sessions run on it)."""

    def __init__(self, site: Site) -> None:
        # the real time, moved on by the test: the command line (unlock, locks) runs on the real clock
        self.now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        site.app.state.runtime.signer.wall = lambda: self.now

    def pass_(self, **kw: float) -> None:
        self.now += dt.timedelta(**kw)


@pytest.fixture
def wall(site: Site) -> Wall:
    return Wall(site)


def bf(site: Site) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``branchflow`` as a subprocess on the site's own database."""
    url = site.world.sessions.kw["bind"].url.render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHFLOW_")}
    env.update(BRANCHFLOW_DATABASE_URL=url, PYTHONPATH=str(ROOT))

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "service.cli", *args], check=False, env=env, text=True,
                           capture_output=True, timeout=120)
        assert r.returncode == code, f"{args} → {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    return run


def token(site: Site, email: str, password: str) -> tuple[int, dict[str, str], dict[str, str]]:
    r = site.client.post("/api/token", json={"email": email, "password": password})
    return r.status_code, r.json(), dict(r.headers)


def test_wrong_passwords_meet_growing_waits_then_a_lockout_the_organisation_department_lifts(
        site: Site, wall: Wall) -> None:
    org = "org@test.cn"
    for _ in range(throttle.FREE_FAILURES):
        assert token(site, org, "wrong-password-1")[0] == 401
    status, body, headers = token(site, org, PASSWORD)  # the right one, too early: not even checked
    assert status == 429 and headers["retry-after"] == "1"
    assert body["message"] == "登录尝试过于频繁，请 1 秒后再试"
    waits = []
    for _ in range(throttle.LOCK_AFTER - throttle.FREE_FAILURES):
        status, body, headers = token(site, org, "wrong-password-1")
        while status == 429:  # wait exactly as told
            waits.append(int(headers["retry-after"]))
            wall.pass_(seconds=int(headers["retry-after"]))
            status, body, headers = token(site, org, "wrong-password-1")
        assert status == 401
    assert waits == [1, 2, 4, 8, 16, 32, 60]  # seconds after the last failure, doubling up to a minute
    status, body, headers = token(site, org, PASSWORD)
    assert status == 429 and "该账号因连续多次密码错误已临时锁定" in body["message"] and "组织部解除锁定" in body["message"]
    assert int(headers["retry-after"]) == throttle.LOCK_MINUTES * 60
    wall.pass_(minutes=5)
    assert token(site, org, PASSWORD)[0] == 429  # still locked, the right password notwithstanding

    run = bf(site)
    assert "org@test.cn  锁定于" in run("user", "locks").stdout
    r = run("user", "unlock", org, "--as", "sec1@test.cn", code=4)
    assert "须为组织部" in r.stderr
    assert "已解除 org@test.cn 的锁定" in run("user", "unlock", org, "--as", "org@test.cn").stdout
    status, body, _ = token(site, org, PASSWORD)
    assert status == 200 and body["access_token"]


def test_an_unknown_e_mail_is_throttled_exactly_like_a_real_one(site: Site, wall: Wall) -> None:
    answers = []
    for email in ("org@test.cn", "nobody-here@test.cn"):
        seen = []
        for _ in range(throttle.FREE_FAILURES + 1):
            status, body, headers = token(site, email, "wrong-password-1")
            seen.append((status, body, headers.get("retry-after")))
        answers.append(seen)
    assert answers[0] == answers[1]
    assert answers[0][-1][0] == 429


def test_one_address_trying_many_accounts_is_slowed_down(site: Site, wall: Wall) -> None:
    for i in range(throttle.IP_FREE_FAILURES):
        assert token(site, f"guess{i}@test.cn", "wrong-password-1")[0] == 401
    status, body, headers = token(site, "sec2@test.cn", PASSWORD)  # a fresh account, the same address
    assert status == 429 and body["message"].startswith("登录尝试过于频繁") and headers["retry-after"] == "1"
    wall.pass_(seconds=1)
    assert token(site, "sec2@test.cn", PASSWORD)[0] == 200


def test_the_log_in_page_answers_429_in_chinese_with_retry_after(site: Site, wall: Wall) -> None:
    from tests.acceptance.test_web import csrf_of, text_of

    c = site.page_client(None)
    page = c.get("/login")
    for _ in range(throttle.FREE_FAILURES + 1):
        r = c.post("/login", data={"csrf": csrf_of(page.text), "email": "sec1@test.cn", "password": "nope-nope-nope",
                                   "next": "/"})
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert "登录尝试过于频繁，请 1 秒后再试" in text_of(r.text)


def test_every_attempt_is_recorded_for_the_auditor_without_the_password(site: Site, wall: Wall) -> None:
    secret_guess = "Guess-Zebra-0042"
    assert token(site, "sec1@test.cn", secret_guess)[0] == 401
    wall.pass_(seconds=1)
    assert token(site, "sec1@test.cn", PASSWORD)[0] == 200
    out = bf(site)("audit", "logins", "--email", "sec1@test.cn").stdout.splitlines()
    assert len(out) == 2
    assert out[0].endswith("sec1@test.cn  testclient  API  成功")
    assert out[1].endswith("sec1@test.cn  testclient  API  密码错误")
    assert out[1].startswith((wall.now - dt.timedelta(seconds=1)).astimezone(dt.timezone(dt.timedelta(hours=8)))
                             .strftime("%Y-%m-%d %H:%M:%S"))  # Beijing time of the attempt
    with site.world.sessions() as s:  # nowhere in the table, in any column
        dump = repr(s.execute(text("SELECT * FROM login_attempts")).all())
    assert secret_guess not in dump and PASSWORD not in dump


@pytest.mark.parametrize("bad", ["123456", "aaaaaa", "      ", "aaaaaaaaaaaaaaaa", "demo123", "woaini1314",
                                 "password2026!", "1qaz2wsx3edc4rfv", "qwertyuiop123", "abababababab"])
def test_common_or_trivial_passwords_are_refused(bad: str) -> None:
    assert passwords.problem(bad) is not None


def test_the_password_rules_name_what_is_wrong_in_chinese() -> None:
    assert passwords.problem("short-one") == "密码至少 12 位（可用一句话或几个词组成的口令）"
    assert passwords.problem("zhangsan.wang-2026", email="zhangsan.wang@univ.cn") == "密码不能包含本人的邮箱名"
    assert passwords.problem("我叫张三丰在生命学院工作", name="张三丰") == "密码不能包含本人的姓名"
    assert passwords.problem("haitang-secret-2026") is None
    assert passwords.problem("correct horse battery staple") is None
    assert len(passwords.common_passwords()) > 5000  # shipped as package data


def test_the_command_line_refuses_a_common_password_and_creates_nothing(site: Site) -> None:
    run = bf(site)
    r = run("user", "add", "new@test.cn", "--name", "新人", "--password", "password123456", "--role", "auditor",
            code=2)
    assert "该密码过于常见" in r.stderr
    r = run("user", "passwd", "sec1@test.cn", "--password", "sec1-is-my-name", code=2)
    assert "密码不能包含本人的邮箱名" in r.stderr
    with site.world.sessions() as s:
        assert s.scalar(select(Person).where(Person.email == "new@test.cn")) is None


def test_a_hash_with_old_argon2_parameters_is_replaced_at_the_next_log_in(site: Site, wall: Wall) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with site.world.sessions() as s, s.begin():
        s.scalar(select(Person).where(Person.email == "sec1@test.cn")).password_hash = weak  # type: ignore[union-attr]
    assert token(site, "sec1@test.cn", PASSWORD)[0] == 200
    with site.world.sessions() as s:
        now_hash = s.scalar(select(Person.password_hash).where(Person.email == "sec1@test.cn"))
    assert now_hash != weak and not passwords.hasher.check_needs_rehash(now_hash)  # type: ignore[arg-type]
    assert passwords.hasher.verify(now_hash, PASSWORD)  # type: ignore[arg-type]

"""Fixtures for the HTTP and browser tests: the real app on the real database of ``world`` (SQLite and
PostgreSQL), people with passwords, a settable clock, a uvicorn server on 127.0.0.1 in a thread, and
Debian's Chromium driven by Playwright.
"""

from __future__ import annotations

import datetime as dt
import functools
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.world import AUDITOR, GB2_SEC, GB_SEC, MEMBERS, ORG, World, at

PASSWORD = "haitang-secret-2026"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

# Who is who in the world: the personas of the role matrix.
PEOPLE = {
    "sec1": "sec1@test.cn",  # secretary of B1 (GB1)
    "sec2": "sec2@test.cn",  # secretary of B2 (GB1)
    "gb1": GB_SEC,           # general branch GB1: B1, B2
    "gb2": GB2_SEC,          # general branch GB2: B3, B4
    "org": ORG,              # organisation department of committee C1
    "m1": MEMBERS[0],        # committee member
    "m2": MEMBERS[1],
    "auditor": AUDITOR,
}


class Clock:
    """The app's clock, set by the test."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@functools.cache
def _password_hash() -> str:
    """One argon2 hash of PASSWORD for everybody (hashing is slow on purpose; once is enough)."""
    from service.auth import hash_password

    return hash_password(PASSWORD)


class Site:
    """The app on the world's database, with a token per persona."""

    def __init__(self, world: World, clock: Clock) -> None:
        from service.app import create_app
        from workflow.models import Person

        self.world = world
        self.clock = clock
        with world.sessions() as s, s.begin():
            for p in s.query(Person).all():
                p.password_hash = _password_hash()
        engine = world.sessions.kw["bind"]
        self.app: FastAPI = create_app(engine=engine, clock=clock, secret="test-secret-key")
        self.client = TestClient(self.app, base_url="http://testserver")
        self._tokens: dict[str, str] = {}

    def token(self, who: str) -> str:
        """An API token as ``POST /api/token`` issues it (stored here: argon2 makes each log-in cost ~0.25 s;
        test_api.py logs in through the endpoint itself)."""
        from workflow.repository import person_by_email

        if who not in self._tokens:
            with self.world.sessions() as s, s.begin():
                person = person_by_email(s, PEOPLE.get(who, who))
                self._tokens[who] = self.app.state.runtime.signer.issue(s, person, api=True)
        return self._tokens[who]

    def page_client(self, who: str | None) -> TestClient:
        """A client holding ``who``'s page session cookie (a server-side session opened here, as the log-in form would)."""
        from service.auth import SESSION_COOKIE
        from workflow.repository import person_by_email

        c = TestClient(self.app, base_url="http://testserver")
        if who:
            with self.world.sessions() as s, s.begin():
                c.cookies.set(SESSION_COOKIE, self.app.state.runtime.signer.issue(s, person_by_email(s, PEOPLE.get(who, who))))
        return c

    def headers(self, who: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(who)}"} if who else {}

    def call(self, who: str | None, method: str, path: str, **kw: Any) -> Any:
        return self.client.request(method, path, headers=self.headers(who), **kw)

    def version(self, branch: str) -> int:
        return self.world.case(branch).version


@pytest.fixture
def clock() -> Clock:
    return Clock(at(4, 2, 9))


@pytest.fixture
def site(world: World, clock: Clock) -> Iterator[Site]:
    s = Site(world, clock)
    with s.client:
        yield s


# --- a real server and a real browser ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """uvicorn serving ``app`` on 127.0.0.1:<free port> in a thread."""

    def __init__(self, app: FastAPI) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def sqlite_world(tmp_path: Path) -> World:
    """The world on a SQLite file only (the browser tests exercise pages, not storage backends)."""
    from workflow.db import make_engine, session_factory
    from workflow.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'branchflow.db'}"
    engine = make_engine(url)
    upgrade(engine)
    return World(session_factory(engine))


@pytest.fixture
def live(sqlite_world: World, clock: Clock) -> Iterator[tuple[Site, Server]]:
    site = Site(sqlite_world, clock)
    with Server(site.app) as server:
        yield site, server


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, for one test module at a time: Playwright's sync API cannot run twice at once, and
    other modules start their own."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"Chromium not found at {CHROMIUM}: install the Debian packages `chromium fonts-wqy-microhei`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def phone(chromium: Any) -> Iterator[Any]:
    """A phone-sized page (390×844, touch) in a fresh browser context."""
    ctx = chromium.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                               has_touch=True, locale="zh-CN")
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    yield page
    ctx.close()


def shot(page: Any, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path

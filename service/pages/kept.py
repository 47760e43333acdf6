"""Forms that survive an expired session (issue 16, point 7).

When a form arrives after its session has ended (idle, over its time, roles changed, logged out elsewhere),
the text fields the person typed are kept here, server-side, under a random key that travels only in an
HttpOnly cookie (never in the URL; the CSRF token and uploads are not kept). The log-in page says the input
is kept; after logging in as the same person, the page the form came from opens with the fields filled in
again — not submitted: the person checks and submits it themselves.

The store is this process's memory (small, 30 minutes, bounded): a restart or another worker process
forgets it, and the person retypes — as before this module existed.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from service.security import cookie_secure

KEPT_COOKIE = "bf_kept"
TTL_SECONDS = 30 * 60
MAX_ENTRIES = 2000
MAX_CHARS = 200_000  # the text of one form (a plan with five items and long analyses fits easily)
NOT_KEPT = frozenset({"csrf"})
RESTORED = "您在登录失效前填写的内容已恢复到表单中（尚未提交），请核对后再提交。"


@dataclasses.dataclass(frozen=True)
class _Kept:
    email: str
    path: str
    fields: tuple[tuple[str, str], ...]
    until: float


_store: dict[str, _Kept] = {}
_lock = threading.Lock()


def keep(response: Response, request: Request, email: str, path: str, form: FormData | None) -> bool:
    """Keep ``form``'s text fields for ``email`` and ``path``; the key goes into a cookie on ``response``."""
    if form is None:
        return False
    fields = tuple((k, v) for k, v in form.multi_items() if isinstance(v, str) and k not in NOT_KEPT)
    if not fields or sum(len(k) + len(v) for k, v in fields) > MAX_CHARS:
        return False
    key = secrets.token_urlsafe(24)
    now = time.monotonic()
    with _lock:
        for k in [k for k, e in _store.items() if e.until < now]:
            del _store[k]
        while len(_store) >= MAX_ENTRIES:
            del _store[next(iter(_store))]  # the oldest first
        _store[key] = _Kept(email=email, path=path, fields=fields, until=now + TTL_SECONDS)
    response.set_cookie(KEPT_COOKIE, key, max_age=TTL_SECONDS, httponly=True, samesite="lax", path="/",
                        secure=cookie_secure(request))
    return True


def take(request: Request, email: str, path: str) -> dict[str, str] | None:
    """The fields kept for this person and page (once: they are forgotten when taken), or None."""
    key = request.cookies.get(KEPT_COOKIE)
    if not key:
        return None
    with _lock:
        entry = _store.get(key)
        if entry is None or entry.until < time.monotonic():
            _store.pop(key, None)
            return None
        if entry.email != email or entry.path != path:
            return None  # somebody else logged in on this browser, or another page: not theirs to see
        del _store[key]
    return dict(entry.fields)


def forget(response: Response) -> None:
    response.delete_cookie(KEPT_COOKIE, path="/")

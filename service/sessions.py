"""Server-side page sessions and named API tokens (OWASP ASVS 4.0 V3).

The cookie (``bf_session``) and the bearer token are 32 random bytes; the database keeps only their
sha256 (``web_sessions.id_hash``, ``api_tokens.token_hash``). So logging out, a password change, a role
change and an administrator's "end all sessions" take effect at the very next request: the row is ended,
with a reason the log-in page can name.

* Page sessions end after :attr:`Policy.idle` without a request and :attr:`Policy.absolute` after the
  log-in, whatever happens (settings ``BRANCHFLOW_SESSION_IDLE_MINUTES``, ``…_ABSOLUTE_HOURS``).
* API tokens have a name, an expiry (24 h from ``POST /api/token``; 1–366 days from
  ``branchflow user token``), and can be listed and revoked (``branchflow user tokens / token-revoke``).
* ``roles_fp`` is a fingerprint of the person's roles at log-in: when it no longer matches, the session
  or token ends ("角色已变更").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CursorResult, bindparam, delete, select, update
from sqlalchemy.orm import Session

from workflow.errors import BranchflowError, InvalidInput
from workflow.models import ApiTokenRow, Person, WebSessionRow
from workflow.service import Actor, actor_for

API_TOKEN_HOURS = 24
LONGEST_TOKEN_DAYS = 366
TOUCH_EVERY = dt.timedelta(seconds=60)  # last_seen is written at most once a minute per session
KEEP_ENDED = dt.timedelta(days=30)

REASONS = {
    "logout": "您已退出登录，请重新登录",
    "password": "密码已更改，请重新登录",
    "roles": "角色已变更，请重新登录",
    "admin": "管理员已结束您的全部会话，请重新登录",
    "idle": "长时间未操作，登录已失效，请重新登录",
    "absolute": "登录时间已超过上限，请重新登录",
    "revoked": "令牌已被撤销",
    "expired": "令牌已过期，请重新取得令牌",
}


class NotAuthenticated(BranchflowError):
    """请先登录。"""

    exit_code = 4
    http_status = 401
    ended: tuple[int, str, dt.datetime] | None = None  # a session found over its time or roles: (id, reason, when)


def settle(s: Session, exc: NotAuthenticated) -> None:
    """Record the end of a session that :func:`read_session` found over (after the request rolled back)."""
    if exc.ended is not None:
        sid, reason, when = exc.ended
        s.execute(update(WebSessionRow).where(WebSessionRow.id == sid, WebSessionRow.ended_at.is_(None))
                  .values(ended_at=when, end_reason=reason))


@dataclass(frozen=True, kw_only=True)
class Policy:
    idle: dt.timedelta = dt.timedelta(minutes=30)
    absolute: dt.timedelta = dt.timedelta(hours=12)


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def roles_fingerprint(actor: Actor) -> str:
    text = "|".join(sorted(f"{r.value}:{sc}" for r, sc in actor.roles))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _person(s: Session, email: str) -> Person:
    person = s.scalar(select(Person).where(Person.email == email.strip().lower()))
    if person is None:
        from workflow.errors import NotFound

        raise NotFound(f"找不到用户 {email!r}")
    return person


# --- page sessions ----------------------------------------------------------------------------------

def open_session(s: Session, person: Person, *, now: dt.datetime, ip: str = "", user_agent: str = "") -> str:
    """A new session for ``person``; returns the cookie value (shown once, never stored)."""
    raw = secrets.token_urlsafe(32)
    actor = actor_for(s, person.email)
    s.add(WebSessionRow(id_hash=digest(raw), person_id=person.id, created_at=now, last_seen_at=now,
                        roles_fp=roles_fingerprint(actor), ip=ip[:64], user_agent=user_agent[:200]))
    s.execute(delete(WebSessionRow).where(WebSessionRow.ended_at < now - KEEP_ENDED))
    s.flush()
    return raw


# built once: every request looks its session or token up
_SESSION_BY_HASH = select(WebSessionRow).where(WebSessionRow.id_hash == bindparam("h"))
_TOKEN_READ = (select(ApiTokenRow.id, ApiTokenRow.revoked_at, ApiTokenRow.revoke_reason, ApiTokenRow.expires_at,
                      ApiTokenRow.last_used_at, ApiTokenRow.roles_fp, Person.email, Person.password_hash)
               .outerjoin(Person, Person.id == ApiTokenRow.person_id)
               .where(ApiTokenRow.token_hash == bindparam("h")))


def _live(s: Session, raw: str) -> WebSessionRow | None:
    if not raw or len(raw) > 128:
        return None
    return s.scalar(_SESSION_BY_HASH, {"h": digest(raw)})


def email_of(s: Session, raw: str) -> str | None:
    """Whose session cookie this is, live or ended (a form sent after the end keeps its input for them)."""
    row = _live(s, raw)
    person = s.get(Person, row.person_id) if row is not None else None
    return person.email if person is not None else None


def read_session(s: Session, raw: str, *, now: dt.datetime, policy: Policy) -> tuple[Actor, WebSessionRow]:
    """The actor of a live session; :class:`NotAuthenticated` saying why when it has ended."""
    row = _live(s, raw)
    if row is None:
        raise NotAuthenticated("登录凭据无效，请重新登录")
    if row.ended_at is not None:
        raise NotAuthenticated(REASONS.get(row.end_reason or "", "登录已失效，请重新登录"))
    reason = None
    if now - row.created_at > policy.absolute:
        reason = "absolute"
    elif now - row.last_seen_at > policy.idle:
        reason = "idle"
    person = s.get(Person, row.person_id)
    actor = actor_for(s, person.email) if person is not None else None
    if reason is None and (actor is None or person is None or not person.password_hash):
        reason = "password"
    if reason is None and actor is not None and roles_fingerprint(actor) != row.roles_fp:
        reason = "roles"
    if reason is not None or actor is None:
        reason = reason or "password"
        exc = NotAuthenticated(REASONS[reason])
        exc.ended = (row.id, reason, now)  # the request's transaction rolls back: settle() records the end
        raise exc
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
        s.flush()
    return actor, row


def end_session(s: Session, raw: str, *, now: dt.datetime, reason: str = "logout") -> None:
    row = _live(s, raw)
    if row is not None and row.ended_at is None:
        row.ended_at, row.end_reason = now, reason
        s.flush()


def end_all(s: Session, email: str, *, now: dt.datetime, reason: str = "admin", tokens: bool = False) -> tuple[int, int]:
    """End every live session (and, with ``tokens``, revoke every live API token) of a person."""
    person = _person(s, email)
    r: CursorResult[Any] = s.execute(  # type: ignore[assignment]
        update(WebSessionRow).where(WebSessionRow.person_id == person.id, WebSessionRow.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason), execution_options={"synchronize_session": False})
    n, t = r.rowcount, 0
    if tokens:
        r = s.execute(  # type: ignore[assignment]
            update(ApiTokenRow).where(ApiTokenRow.person_id == person.id, ApiTokenRow.revoked_at.is_(None))
            .values(revoked_at=now, revoke_reason=reason), execution_options={"synchronize_session": False})
        t = r.rowcount
    s.expire_all()
    return int(n or 0), int(t or 0)


def live_sessions(s: Session, *, now: dt.datetime, policy: Policy, email: str | None = None) -> list[tuple[WebSessionRow, str]]:
    q = (select(WebSessionRow, Person.email).join(Person, Person.id == WebSessionRow.person_id)
         .where(WebSessionRow.ended_at.is_(None), WebSessionRow.created_at > now - policy.absolute,
                WebSessionRow.last_seen_at > now - policy.idle)
         .order_by(Person.email, WebSessionRow.created_at))
    if email:
        q = q.where(Person.email == email.strip().lower())
    return [(r, e) for r, e in s.execute(q).tuples()]


def set_notice(row: WebSessionRow, text: str) -> None:
    """The result of the last form, shown once on the next page (never taken from the URL)."""
    row.notice = text[:400]


def pop_notice(s: Session, row: WebSessionRow) -> str | None:
    text = row.notice
    if text is not None:
        row.notice = None
        s.flush()
    return text


# --- API tokens -------------------------------------------------------------------------------------

def issue_token(s: Session, person: Person, *, now: dt.datetime, name: str, days: int | None = None) -> tuple[str, ApiTokenRow]:
    """A new bearer token (returned once; the table keeps its sha256): 24 hours, or ``days`` days."""
    if days is not None and not 1 <= days <= LONGEST_TOKEN_DAYS:
        raise InvalidInput(f"令牌有效期须为 1–{LONGEST_TOKEN_DAYS} 天")
    name = name.strip()
    if not 1 <= len(name) <= 100 or any(ord(c) < 32 for c in name):
        raise InvalidInput("令牌名称须为 1–100 个字符，不能含控制字符")
    raw = "bft_" + secrets.token_urlsafe(32)
    actor = actor_for(s, person.email)
    life = dt.timedelta(days=days) if days is not None else dt.timedelta(hours=API_TOKEN_HOURS)
    row = ApiTokenRow(token_hash=digest(raw), person_id=person.id, name=name, created_at=now, expires_at=now + life,
                      roles_fp=roles_fingerprint(actor))
    s.add(row)
    s.flush()
    return raw, row


def read_token(s: Session, raw: str, *, now: dt.datetime) -> Actor:
    """The actor of a live API token (one query for the token and its person, columns not entities: every
    API request asks it); :class:`NotAuthenticated` saying why when it is not."""
    row = s.execute(_TOKEN_READ, {"h": digest(raw)}).first() if 0 < len(raw) <= 128 else None
    if row is None:
        raise NotAuthenticated("登录凭据无效，请重新登录")
    if row.revoked_at is not None:
        raise NotAuthenticated(REASONS.get(row.revoke_reason or "", REASONS["revoked"]))
    if now >= row.expires_at:
        raise NotAuthenticated(REASONS["expired"])
    if row.email is None or not row.password_hash:
        raise NotAuthenticated(REASONS["password"])
    actor = actor_for(s, row.email)
    if roles_fingerprint(actor) != row.roles_fp:
        s.execute(update(ApiTokenRow).where(ApiTokenRow.id == row.id).values(revoked_at=now, revoke_reason="roles"))
        raise NotAuthenticated(REASONS["roles"])
    if row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY:
        s.execute(update(ApiTokenRow).where(ApiTokenRow.id == row.id).values(last_used_at=now))
    return actor


def tokens(s: Session, *, email: str | None = None) -> list[tuple[ApiTokenRow, str]]:
    q = (select(ApiTokenRow, Person.email).join(Person, Person.id == ApiTokenRow.person_id)
         .order_by(ApiTokenRow.id))
    if email:
        q = q.where(Person.email == email.strip().lower())
    return [(r, e) for r, e in s.execute(q).tuples()]


def revoke_token(s: Session, token_id: int, *, now: dt.datetime) -> ApiTokenRow:
    row = s.get(ApiTokenRow, token_id)
    if row is None:
        from workflow.errors import NotFound

        raise NotFound(f"找不到编号为 {token_id} 的令牌")
    if row.revoked_at is None:
        row.revoked_at, row.revoke_reason = now, "revoked"
        s.flush()
    return row

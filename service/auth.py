"""Log-in, sessions, API tokens, CSRF and the reading rules (who may SEE which branch).

* Passwords are hashed with argon2 (``people.password_hash``) and must pass :mod:`service.passwords`;
  a hash made with older argon2 parameters is replaced at the next successful log-in.
* Log-in attempts go through :mod:`service.throttle` (growing waits, temporary lockouts, the record of
  every attempt); sessions and API tokens are server-side rows (:mod:`service.sessions`), so logging
  out, a password change, a role change and "end all sessions" take effect at once.
* CSRF: every form carries ``hmac(secret, binding)`` where the binding is the session (the sha256 of the
  session cookie) once logged in, and a random ``bf_csrf`` cookie before. A cross-site page can neither
  read the cookies nor compute the token; a token from another session is refused.
* Acting rules are enforced by the services (they raise :class:`Forbidden`); the reading rules are
  :mod:`workflow.tenancy`'s (wrapped here): a branch secretary sees their own branch, a general-branch
  secretary their general branch, committee members their committee, the organisation department and
  committee-scoped auditors their committee and every committee below it, unscoped auditors everything.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from service import passwords, sessions, throttle
from service.sessions import LONGEST_TOKEN_DAYS, NotAuthenticated, Policy
from states.base import Role
from workflow import tenancy
from workflow.errors import BranchflowError, NotFound
from workflow.models import Branch, Committee, GeneralBranch, Person
from workflow.service import Actor
from workflow.settings import Settings

__all__ = ["LONGEST_TOKEN_DAYS", "NotAuthenticated", "Throttled"]

SESSION_COOKIE = "bf_session"
CSRF_COOKIE = "bf_csrf"
SESSION_MAX_AGE = 12 * 3600  # the cookie's Max-Age; the server-side absolute timeout decides (Policy)
TOKEN_MAX_AGE = sessions.API_TOKEN_HOURS * 3600
MIN_PASSWORD = passwords.MIN_LENGTH

_hasher = passwords.hasher
# A fixed hash to verify against when the e-mail is unknown, so that both paths cost the same.
_DUMMY_HASH = _hasher.hash("branchflow-no-such-user")


class Throttled(BranchflowError):
    """登录尝试过于频繁，请稍后再试。"""

    exit_code = 4
    http_status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def hash_password(password: str, *, email: str = "", name: str = "") -> str:
    return passwords.hash_password(password, email=email, name=name)


def set_password(session: Session, email: str, password: str, *, now: dt.datetime | None = None) -> Person:
    """A new password (checked by the rules); every session and API token of the person ends at once."""
    person = session.scalar(select(Person).where(Person.email == email.strip().lower()))
    if person is None:
        raise NotFound(f"找不到用户 {email!r}")
    person.password_hash = hash_password(password, email=person.email, name=person.name)
    session.flush()
    sessions.end_all(session, person.email, now=now or system_clock(), reason="password", tokens=True)
    return person


def authenticate(session: Session, email: str, password: str) -> Person | None:
    """The person if the password is right; ``None`` (the same for an unknown e-mail) otherwise. A hash
    made with older argon2 parameters is rehashed with the current ones."""
    person = session.scalar(select(Person).where(Person.email == email.strip().lower()))
    stored = person.password_hash if person is not None and person.password_hash else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if person is None or not person.password_hash:
        return None
    if _hasher.check_needs_rehash(person.password_hash):
        person.password_hash = _hasher.hash(password)
        session.flush()
    return person


def log_in(session: Session, email: str, password: str, *, ip: str, via: str, now: dt.datetime) -> Person:
    """Throttle, check, record. :class:`Throttled` (429, with the wait) before the password is even
    looked at; :class:`NotAuthenticated` for a wrong one. The caller commits either way (the record of a
    failure must stay): this function never raises after writing except with the outcome recorded."""
    verdict = throttle.check(session, email, ip, now=now)
    if not verdict.allowed:
        throttle.record(session, email, ip, via=via, outcome=verdict.outcome, now=now)
        raise Throttled(verdict.message, verdict.retry_after)
    person = authenticate(session, email, password)
    throttle.record(session, email, ip, via=via, outcome="ok" if person else "bad", now=now)
    if person is None:
        raise NotAuthenticated("邮箱或密码错误")
    return person


def secret_key(settings: Settings) -> str:
    """``BRANCHFLOW_SECRET_KEY``, or one generated once and kept in ``<data_dir>/secret.key``."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret.key"
    if path.exists():
        return path.read_text(encoding="ascii").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key, encoding="ascii")
    path.chmod(0o600)
    return key


class Signer:
    """Issues and reads session cookies and API tokens (server-side rows) and CSRF tokens (one secret).
    ``wall`` is the real clock of timeouts and throttling (not the app's possibly fixed demo clock)."""

    def __init__(self, secret: str, policy: Policy | None = None, wall: Callable[[], dt.datetime] | None = None) -> None:
        self.secret = secret
        self.policy = policy or Policy()
        self.wall = wall or system_clock

    def issue(self, session: Session, person: Person, *, api: bool = False, days: int | None = None,
              name: str | None = None, ip: str = "", user_agent: str = "") -> str:
        """A session cookie, or an API token (24 hours; ``days`` for another system's longer-lived one)."""
        now = self.wall()
        if api:
            label = name or ("登录令牌（POST /api/token）" if days is None else f"{days} 天令牌")
            return sessions.issue_token(session, person, now=now, name=label, days=days)[0]
        return sessions.open_session(session, person, now=now, ip=ip, user_agent=user_agent)

    def read(self, session: Session, token: str, *, api: bool = False) -> Actor:
        """The actor named by a live token; :class:`NotAuthenticated` when it is bad, expired or ended."""
        if api:
            return sessions.read_token(session, token, now=self.wall())
        return sessions.read_session(session, token, now=self.wall(), policy=self.policy)[0]

    def csrf_for(self, binding: str) -> str:
        return hmac.new(self.secret.encode(), f"csrf:{binding}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, binding: str | None, token: str | None) -> bool:
        if not binding or not token:
            return False
        return hmac.compare_digest(self.csrf_for(binding), token)


def csrf_binding(session_cookie: str | None, nonce: str | None) -> str | None:
    """What a form's CSRF token is bound to: the session once logged in, the visitor's nonce before."""
    if session_cookie:
        return "s:" + sessions.digest(session_cookie)
    return "n:" + nonce if nonce else None


# --- reading rules --------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Where:
    """Where a branch sits: what the reading rules look at. ``committees`` is the committee's line in the
    tree, top first, its own last (a parent's organisation department and auditors read their subtree)."""

    branch: str
    general_branch: str | None
    committee: str
    committees: tuple[str, ...] = ()


def may_see(actor: Actor, where: Where) -> bool:
    """The reading rules of :mod:`workflow.tenancy` for one branch (pure: the tree line is in ``where``)."""
    line = where.committees or (where.committee,)
    for role, scope in actor.roles:
        if role is Role.auditor and (not scope or scope in line):
            return True
        if role is Role.org_department and scope in line:
            return True
        if role is Role.branch_secretary and scope == where.branch:
            return True
        if role is Role.general_branch_secretary and where.general_branch and scope == where.general_branch:
            return True
        if role is Role.committee_member and scope == where.committee:
            return True
    return False


_WHERE = (select(Branch.code, GeneralBranch.code.label("gb"), Committee.code.label("c"), Committee.id.label("cid"),
                 Committee.path)
          .join(Committee, Committee.id == Branch.committee_id)
          .outerjoin(GeneralBranch, GeneralBranch.id == Branch.general_branch_id)
          .where(Branch.code == bindparam("code")))  # built once: every request about a branch asks it


def where_of(session: Session, branch_code: str) -> Where:
    row = session.execute(_WHERE, {"code": branch_code}).first()
    if row is None:
        raise NotFound(f"找不到党支部 {branch_code!r}")
    return Where(branch=row.code, general_branch=row.gb, committee=row.c,
                 committees=tuple(tenancy.ancestors(session, row.cid, row.path or "")))


def hidden(kind: str, code: str) -> NotFound:
    """The one answer for something that does not exist and for something outside the caller's scope."""
    return NotFound(f"{kind} {code[:64]!r} 不存在或无权访问")


def require_see(session: Session, actor: Actor, branch_code: str) -> Where:
    """Where the branch sits, if the actor may see it. No oracle: an unknown code and a branch outside the
    actor's scope get the same :class:`NotFound`, before any other check (stage, role, version)."""
    try:
        where = where_of(session, branch_code)
    except NotFound:
        raise hidden("党支部", branch_code) from None
    if not may_see(actor, where):
        raise hidden("党支部", branch_code)
    return where


def require_public_or_see(session: Session, actor: Actor, branch_code: str) -> None:
    """Objections: open to every logged-in person while the branch's grade is published (the publicity page
    lists it for everybody); any other branch outside the actor's scope answers as :func:`require_see`."""
    from workflow.repository import load_case

    try:
        require_see(session, actor, branch_code)
        return
    except NotFound:
        pass
    try:
        case = load_case(session, branch_code)
    except NotFound:
        raise hidden("党支部", branch_code) from None
    if case.stage.value != "publicity" or not case.state.get("publicity"):
        raise hidden("党支部", branch_code)


def sees_everything(session: Session, actor: Actor) -> bool:
    """Deployment-wide auditors, and people whose reading scope covers every committee that has branches."""
    return tenancy.sees_everything(session, actor)


def filter_rows(session: Session, actor: Actor, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the rows (from ``views.list_cases``) of branches the actor may see (one query for the codes)."""
    rows = list(rows)
    if sees_everything(session, actor) or not rows:
        return rows
    codes = sorted({r["code"] for r in rows})
    keep: set[str] = set()
    for lo in range(0, len(codes), 500):
        keep.update(session.scalars(select(Branch.code).where(Branch.code.in_(codes[lo:lo + 500]),
                                                              tenancy.branch_clause(actor))))
    return [r for r in rows if r["code"] in keep]


def narrowest_general_branch(actor: Actor) -> str | None:
    """For a person whose only reading scope is one general branch, that general branch (for the query)."""
    kinds = {r for r, _ in actor.roles}
    gbs = {s for r, s in actor.roles if r is Role.general_branch_secretary}
    if kinds == {Role.general_branch_secretary} and len(gbs) == 1:
        return next(iter(gbs))
    return None


def visible_cases(session: Session, actor: Actor, *, now: Any, campaign: str | None = None,
                  stage: str | None = None, general_branch: str | None = None, grade: str | None = None,
                  overdue: bool | None = None, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
    """``views.list_cases`` narrowed to what the actor may see, in SQL (:func:`workflow.tenancy.branch_clause`);
    the campaign is the one named if the actor may read it (else hidden like an unknown one), or the latest
    of the actor's own committee."""
    from workflow import views

    camp = tenancy.campaign_for(session, actor, campaign)
    where = None if sees_everything(session, actor) else tenancy.branch_clause(actor)
    return views.list_cases(session, now=now, campaign=camp.code, stage=stage, general_branch=general_branch,
                            grade=grade, overdue=overdue, limit=limit, offset=offset, where=where)

"""Log-in, sessions, API tokens, CSRF and the reading rules (who may SEE which branch).

* Passwords are hashed with argon2 (``people.password_hash``).
* A session cookie (pages) and a bearer token (API) are the same kind of thing: a signed, expiring
  token (itsdangerous) naming the person's e-mail and a fingerprint of their password hash, so that
  changing the password ends every earlier session and token. Different salts keep a cookie from
  being used as a token and vice versa.
* CSRF: every visitor has a random ``bf_csrf`` cookie; every form carries ``hmac(secret, cookie)``.
  A cross-site page can neither read the cookie nor compute the token.
* Acting rules are enforced by the services (they raise :class:`Forbidden`); the reading rules are
  here: a branch secretary sees their own branch, a general-branch secretary their general branch,
  the organisation department and committee members their committee, auditors everything.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from states.base import Role
from workflow.errors import BranchflowError, InvalidInput, NotFound
from workflow.models import Branch, Committee, GeneralBranch, Person
from workflow.service import Actor, actor_for
from workflow.settings import Settings

SESSION_COOKIE = "bf_session"
CSRF_COOKIE = "bf_csrf"
SESSION_MAX_AGE = 12 * 3600
TOKEN_MAX_AGE = 24 * 3600
LONGEST_TOKEN_DAYS = 366  # `branchflow user token --days`: for other systems calling the API
MIN_PASSWORD = 6

_hasher = PasswordHasher()
# A fixed hash to verify against when the e-mail is unknown, so that both paths cost the same.
_DUMMY_HASH = _hasher.hash("branchflow-no-such-user")


class NotAuthenticated(BranchflowError):
    """请先登录。"""

    exit_code = 4
    http_status = 401


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"密码至少 {MIN_PASSWORD} 位")
    return _hasher.hash(password)


def set_password(session: Session, email: str, password: str) -> Person:
    person = session.scalar(select(Person).where(Person.email == email.strip().lower()))
    if person is None:
        raise NotFound(f"找不到用户 {email!r}")
    person.password_hash = hash_password(password)
    session.flush()
    return person


def authenticate(session: Session, email: str, password: str) -> Person | None:
    """The person if the password is right; ``None`` (the same for an unknown e-mail) otherwise."""
    person = session.scalar(select(Person).where(Person.email == email.strip().lower()))
    stored = person.password_hash if person is not None and person.password_hash else _DUMMY_HASH
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if person is None or not person.password_hash:
        return None
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


def _fingerprint(password_hash: str | None) -> str:
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


class Signer:
    """Issues and reads session cookies, API tokens and CSRF tokens with one secret."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self._session = URLSafeTimedSerializer(secret, salt="branchflow-session")
        self._token = URLSafeTimedSerializer(secret, salt="branchflow-api-token")

    def issue(self, person: Person, *, api: bool = False, days: int | None = None) -> str:
        """A session cookie, or an API token (24 hours; ``days`` for another system's longer-lived one)."""
        s = self._token if api else self._session
        data: dict[str, Any] = {"e": person.email, "f": _fingerprint(person.password_hash)}
        if api and days is not None:
            if not 1 <= days <= LONGEST_TOKEN_DAYS:
                raise InvalidInput(f"令牌有效期须为 1–{LONGEST_TOKEN_DAYS} 天")
            data["x"] = int(time.time()) + days * 86400
        return s.dumps(data)

    def read(self, session: Session, token: str, *, api: bool = False) -> Actor:
        """The actor named by a valid token; :class:`NotAuthenticated` when it is bad, expired or revoked."""
        s = self._token if api else self._session
        try:
            data = s.loads(token, max_age=LONGEST_TOKEN_DAYS * 86400 if api else SESSION_MAX_AGE)
        except SignatureExpired:
            raise NotAuthenticated("登录已过期，请重新登录") from None
        except BadSignature:
            raise NotAuthenticated("登录凭据无效，请重新登录") from None
        if not isinstance(data, dict) or not isinstance(data.get("e"), str):
            raise NotAuthenticated("登录凭据无效，请重新登录")
        if api:
            _, issued = s.loads(token, return_timestamp=True)
            x = data.get("x")
            expires = float(x) if isinstance(x, int) else issued.timestamp() + TOKEN_MAX_AGE
            if time.time() > expires:
                raise NotAuthenticated("令牌已过期，请重新取得令牌")
        person = session.scalar(select(Person).where(Person.email == data["e"]))
        if person is None or not person.password_hash or _fingerprint(person.password_hash) != data.get("f"):
            raise NotAuthenticated("密码已更改或账号已停用，请重新登录")
        return actor_for(session, person.email)

    def csrf_for(self, nonce: str) -> str:
        return hmac.new(self.secret.encode(), f"csrf:{nonce}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(self.csrf_for(nonce), token)


# --- reading rules --------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Where:
    """Where a branch sits: what the reading rules look at."""

    branch: str
    general_branch: str | None
    committee: str


def may_see(actor: Actor, where: Where) -> bool:
    for role, scope in actor.roles:
        if role is Role.auditor:
            return True
        if role is Role.branch_secretary and scope == where.branch:
            return True
        if role is Role.general_branch_secretary and where.general_branch and scope == where.general_branch:
            return True
        if role in (Role.org_department, Role.committee_member) and scope == where.committee:
            return True
    return False


def where_of(session: Session, branch_code: str) -> Where:
    row = session.execute(
        select(Branch.code, GeneralBranch.code.label("gb"), Committee.code.label("c"))
        .join(Committee, Committee.id == Branch.committee_id)
        .outerjoin(GeneralBranch, GeneralBranch.id == Branch.general_branch_id)
        .where(Branch.code == branch_code)
    ).first()
    if row is None:
        raise NotFound(f"找不到党支部 {branch_code!r}")
    return Where(branch=row.code, general_branch=row.gb, committee=row.c)


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
    """Auditors, and committee-level people when every committee with branches is theirs."""
    if actor.has_role(Role.auditor):
        return True
    mine = {s for r, s in actor.roles if r in (Role.org_department, Role.committee_member)}
    if not mine:
        return False
    used = set(session.scalars(select(Committee.code).where(Committee.id.in_(select(Branch.committee_id).distinct()))))
    return used <= mine


def filter_rows(session: Session, actor: Actor, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the rows (from ``views.list_cases``) of branches the actor may see."""
    rows = list(rows)
    if sees_everything(session, actor):
        return rows
    committees = {s for r, s in actor.roles if r in (Role.org_department, Role.committee_member)}
    gbs = {s for r, s in actor.roles if r is Role.general_branch_secretary}
    own = {s for r, s in actor.roles if r is Role.branch_secretary}
    in_committee: set[str] = set()
    if committees:
        in_committee = set(session.scalars(
            select(Branch.code).join(Committee, Committee.id == Branch.committee_id).where(Committee.code.in_(committees))
        ))
    return [r for r in rows if r["code"] in own or r["general_branch"] in gbs or r["code"] in in_committee]


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
    """``views.list_cases`` narrowed to what the actor may see; the query is narrowed first where it can be
    (one general branch), so a general-branch secretary's list costs what their general branch costs."""
    from workflow import views

    kw: dict[str, Any] = {"now": now, "campaign": campaign, "stage": stage, "grade": grade, "overdue": overdue}
    if sees_everything(session, actor):
        return views.list_cases(session, general_branch=general_branch, limit=limit, offset=offset, **kw)
    committees = {s for r, s in actor.roles if r in (Role.org_department, Role.committee_member)}
    gbs = {s for r, s in actor.roles if r is Role.general_branch_secretary}
    own = [s for r, s in actor.roles if r is Role.branch_secretary]
    rows: list[dict[str, Any]] = []
    if committees:
        rows = views.list_cases(session, general_branch=general_branch, **kw)
    else:
        for code in own:
            try:
                gb = where_of(session, code).general_branch
            except NotFound:
                continue
            if gb is None:
                rows += [r for r in views.list_cases(session, **kw) if r["code"] == code]
            else:
                gbs.add(gb)
        for gb in sorted(gbs):
            if general_branch in (None, gb):
                rows += views.list_cases(session, general_branch=gb, **kw)
    seen: set[str] = set()
    unique = []
    for r in filter_rows(session, actor, rows):
        if r["code"] not in seen:
            seen.add(r["code"])
            unique.append(r)
    unique.sort(key=lambda r: r["code"])
    return unique[offset: offset + limit if limit is not None else None]

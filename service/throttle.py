"""Log-in throttling and temporary lockouts (OWASP ASVS 4.0 V2.2.1), and the record of every log-in.

Decisions are pure (:func:`decide` looks at counts and times and returns a :class:`Verdict`); the
database only supplies the counts. Nothing sleeps in the server: a refused attempt is answered at once
with 429 and a ``Retry-After`` naming the wait.

* Per account (the e-mail as typed, lower-cased — the same for an unknown e-mail, so the answers do not
  tell which accounts exist): after :data:`FREE_FAILURES` failures in a row the next attempt must wait
  1 s, then 2, 4, 8 … up to :data:`MAX_DELAY` seconds after the last failure; after :data:`LOCK_AFTER`
  failures the account is locked for :data:`LOCK_MINUTES` minutes — even the right password is refused
  — until the time passes or the organisation department lifts it (``branchflow user unlock``).
* Per client address: after :data:`IP_FREE_FAILURES` failures within :data:`WINDOW`, growing waits the
  same way (one address trying many accounts).
* Every attempt (ok, bad, throttled, locked) and every unlock is a row of ``login_attempts``: time,
  account, address, page or API, outcome — never the password.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from workflow.models import LoginAttemptRow, LoginLockRow

FREE_FAILURES = 3
MAX_DELAY = 60
LOCK_AFTER = 10
LOCK_MINUTES = 15
IP_FREE_FAILURES = 20
IP_MAX_DELAY = 300
WINDOW = dt.timedelta(minutes=15)
KEEP = dt.timedelta(days=180)  # how long the log-in record is kept


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """Whether a log-in attempt may be checked now; when not, how long to wait and why (Chinese)."""

    allowed: bool
    retry_after: int = 0
    message: str = ""
    outcome: str = ""  # throttled or locked


ALLOW = Verdict(allowed=True)


def delay_for(failures: int, free: int, cap: int) -> int:
    """Seconds to wait after the last failure: 0 while ``failures <= free``, then 1, 2, 4 … up to ``cap``."""
    if failures < free:
        return 0
    return int(min(cap, 2 ** (failures - free)))


def decide(*, now: dt.datetime, account_failures: int, account_last: dt.datetime | None,
           ip_failures: int, ip_last: dt.datetime | None, locked_until: dt.datetime | None) -> Verdict:
    if locked_until is not None and now < locked_until:
        wait = max(1, math.ceil((locked_until - now).total_seconds()))
        return Verdict(allowed=False, retry_after=wait, outcome="locked",
                       message=f"该账号因连续多次密码错误已临时锁定，请 {_words(wait)}后再试，或请组织部解除锁定")
    for failures, last, free, cap in ((account_failures, account_last, FREE_FAILURES, MAX_DELAY),
                                      (ip_failures, ip_last, IP_FREE_FAILURES, IP_MAX_DELAY)):
        d = delay_for(failures, free, cap)
        if d and last is not None and now < last + dt.timedelta(seconds=d):
            wait = max(1, math.ceil((last + dt.timedelta(seconds=d) - now).total_seconds()))
            return Verdict(allowed=False, retry_after=wait, outcome="throttled",
                           message=f"登录尝试过于频繁，请 {_words(wait)}后再试")
    return ALLOW


def _words(seconds: int) -> str:
    return f"{seconds} 秒" if seconds < 120 else f"{(seconds + 59) // 60} 分钟"


def _account_failures(s: Session, email: str, now: dt.datetime) -> tuple[int, dt.datetime | None]:
    """Failures since the last success or unlock (within the lockout's reach: one day)."""
    reset = s.scalar(select(func.max(LoginAttemptRow.at)).where(
        LoginAttemptRow.email == email, LoginAttemptRow.outcome.in_(("ok", "unlocked"))))
    since = max(reset or now - dt.timedelta(days=1), now - dt.timedelta(days=1))
    row = s.execute(select(func.count(), func.max(LoginAttemptRow.at)).where(
        LoginAttemptRow.email == email, LoginAttemptRow.outcome == "bad", LoginAttemptRow.at > since)).one()
    return int(row[0]), row[1]


def _ip_failures(s: Session, ip: str, now: dt.datetime) -> tuple[int, dt.datetime | None]:
    if not ip:
        return 0, None
    row = s.execute(select(func.count(), func.max(LoginAttemptRow.at)).where(
        LoginAttemptRow.ip == ip, LoginAttemptRow.outcome == "bad", LoginAttemptRow.at > now - WINDOW)).one()
    return int(row[0]), row[1]


def check(s: Session, email: str, ip: str, *, now: dt.datetime) -> Verdict:
    """May this attempt be checked now? (Reads only; :func:`record` writes the outcome.)"""
    email = email.strip().lower()[:254]
    n, last = _account_failures(s, email, now)
    ni, last_i = _ip_failures(s, ip, now)
    lock = s.get(LoginLockRow, email)
    return decide(now=now, account_failures=n, account_last=last, ip_failures=ni, ip_last=last_i,
                  locked_until=lock.locked_until if lock else None)


def record(s: Session, email: str, ip: str, *, via: str, outcome: str, now: dt.datetime) -> None:
    """Write one attempt; a failure that reaches :data:`LOCK_AFTER` locks the account."""
    email = email.strip().lower()[:254]
    s.add(LoginAttemptRow(at=now, email=email, ip=ip[:64], via=via, outcome=outcome))
    s.flush()
    if outcome == "ok":
        s.execute(delete(LoginLockRow).where(LoginLockRow.email == email))
    elif outcome == "bad":
        n, _ = _account_failures(s, email, now)
        if n >= LOCK_AFTER and s.get(LoginLockRow, email) is None:
            s.add(LoginLockRow(email=email, locked_at=now, locked_until=now + dt.timedelta(minutes=LOCK_MINUTES),
                               failures=n))
    if s.info.get("_bf_attempts_pruned") is None:  # old rows go, a little at a time
        s.info["_bf_attempts_pruned"] = True
        s.execute(delete(LoginAttemptRow).where(LoginAttemptRow.at < now - KEEP))


def unlock(s: Session, email: str, *, now: dt.datetime, by: str = "") -> bool:
    """Lift a lockout and restart the count of failures; ``True`` when the account was locked."""
    email = email.strip().lower()
    lock = s.get(LoginLockRow, email)
    if lock is not None:
        s.delete(lock)
    s.add(LoginAttemptRow(at=now, email=email, ip=by[:64], via="cli", outcome="unlocked"))
    s.flush()
    return lock is not None


def locks(s: Session, *, now: dt.datetime) -> list[LoginLockRow]:
    return list(s.scalars(select(LoginLockRow).where(LoginLockRow.locked_until > now).order_by(LoginLockRow.email)))


OUTCOME_LABELS = {"ok": "成功", "bad": "密码错误", "throttled": "过于频繁被拒", "locked": "账号锁定被拒",
                  "unlocked": "解除锁定"}
VIA_LABELS = {"page": "网页", "api": "API", "cli": "命令行"}


def recent(s: Session, *, email: str | None = None, limit: int = 100) -> list[LoginAttemptRow]:
    q = select(LoginAttemptRow).order_by(LoginAttemptRow.at.desc(), LoginAttemptRow.id.desc()).limit(limit)
    if email:
        q = q.where(LoginAttemptRow.email == email.strip().lower())
    return list(s.scalars(q))

"""Password rules (OWASP ASVS 4.0 V2.1) and the argon2 hasher.

A password must have at least :data:`MIN_LENGTH` characters (spaces count, as ASVS 2.1.3 asks, and are
not trimmed), at most :data:`MAX_LENGTH`, not be one character repeated, not contain the account's
e-mail name or the person's name, and not be in the list of common and breached passwords shipped with
the package (``service/data/common-passwords.txt``), also not as a listed word with digits or symbols
added at the end (``password2026!``). No composition rules (ASVS 2.1.9).
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from argon2 import PasswordHasher

from workflow.errors import InvalidInput

MIN_LENGTH = 12
MAX_LENGTH = 128

hasher = PasswordHasher()


@functools.cache
def common_passwords() -> frozenset[str]:
    text = resources.files("service").joinpath("data/common-passwords.txt").read_text(encoding="utf-8")
    return frozenset(ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))


def problem(password: str, *, email: str = "", name: str = "") -> str | None:
    """Why ``password`` is refused (in Chinese), or ``None`` when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"密码至少 {MIN_LENGTH} 位（可用一句话或几个词组成的口令）"
    if len(password) > MAX_LENGTH:
        return f"密码至多 {MAX_LENGTH} 位"
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        return "密码不能含控制字符"
    low = password.lower()
    if len(set(low)) <= 2:
        return "密码不能由同一个字符（或两个字符）反复组成"
    local = email.strip().lower().split("@")[0]
    if len(local) >= 3 and local in low:
        return "密码不能包含本人的邮箱名"
    for part in (name.strip().lower(), name.strip().lower().replace(" ", "")):
        if len(part) >= 2 and part in low:
            return "密码不能包含本人的姓名"
    common = common_passwords()
    stem = re.sub(r"[\d\W_]+$", "", low)
    head = re.sub(r"^[\d\W_]+", "", low)
    if low in common or (len(stem) >= 4 and stem in common) or (len(head) >= 4 and head in common):
        return "该密码过于常见（在常用或已泄露密码表中），请换一个"
    return None


def require_acceptable(password: str, *, email: str = "", name: str = "") -> None:
    why = problem(password, email=email, name=name)
    if why:
        raise InvalidInput(why)


def hash_password(password: str, *, email: str = "", name: str = "") -> str:
    """The argon2 hash of an acceptable password; :class:`InvalidInput` naming the rule it breaks."""
    require_acceptable(password, email=email, name=name)
    return hasher.hash(password)

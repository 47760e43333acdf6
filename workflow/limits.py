"""One table of field limits: lengths, ranges, allowed characters and code patterns.

The numbers match what the database columns hold (``workflow/models.py``: ``String(n)``; ``Integer`` is
PostgreSQL's int4, the narrower of the two backends), so a value that passes here is stored the same on
SQLite and PostgreSQL. The importer, the API's request models, the pages' form parsing and the CLI's
options all check through these functions; each returns or raises a Chinese message that names the
field and the rule, never the whole input.

    check_code(v, what)   → problem or None   letters, digits (any script), ``-_.``; 1–64 characters
    check_name(v, what, kind)                 no control characters (CR, LF, NUL, U+2028 …); ≤ the column
    check_email(v, what)                      one real address, no CR/LF, ≤ 254
    check_int(v, what, kind)                  within the field's range (never beyond int4)
    check_text(v, what)                       free text: line breaks and tabs allowed, other controls not
    require(problem)                          raise :class:`InvalidInput` when there is a problem
    describe(err)                             a pydantic error (``type``, ``ctx``) → Chinese, without the input
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workflow.errors import InvalidInput, pydantic_text

INT4_MAX = 2_147_483_647


@dataclass(frozen=True, kw_only=True)
class TextLimit:
    max_len: int
    min_len: int = 1


@dataclass(frozen=True, kw_only=True)
class IntLimit:
    lo: int
    hi: int


# The table. Text lengths are the column widths in workflow/models.py.
TEXT: dict[str, TextLimit] = {
    "code": TextLimit(max_len=64),            # committees, general branches, branches, campaigns, scopes
    "org_name": TextLimit(max_len=200),       # committee, general branch, branch, campaign names
    "person_name": TextLimit(max_len=100),    # people, branch secretaries
    "email": TextLimit(max_len=254),
    "branch_type": TextLimit(max_len=32),
    "grade": TextLimit(max_len=32),
    "text": TextLimit(max_len=4000),          # reasons, objections, evidence, problems, summaries
    "file_name": TextLimit(max_len=200),      # an attachment's display name (workflow/attachments.py)
}
INT: dict[str, IntLimit] = {
    "member_count": IntLimit(lo=1, hi=100_000),
    "version": IntLimit(lo=0, hi=INT4_MAX),
    "id": IntLimit(lo=1, hi=INT4_MAX),
    "int4": IntLimit(lo=-INT4_MAX - 1, hi=INT4_MAX),
}
# Import files: at most this many bytes and data rows.
IMPORT_MAX_BYTES = 32 * 1024 * 1024
IMPORT_MAX_ROWS = 200_000
# Attachments (issue 16; workflow/attachments.py): per file, per form (one record), per branch's case.
ATTACHMENT_MAX_BYTES = 20 * 1024 * 1024
ATTACHMENT_MAX_PER_RECORD = 10
ATTACHMENT_MAX_PER_RECORD_BYTES = 40 * 1024 * 1024
ATTACHMENT_MAX_PER_CASE_BYTES = 200 * 1024 * 1024
# Dates people may choose (deadlines, publicity starts): within the campaign's year and the next.
YEARS_AFTER_CAMPAIGN = 1

# Letters and digits of any script (a committee's code defaults to its Chinese name), "_", "." and "-":
# no space, quote, slash, semicolon or control character, so a code is safe in a header, a path or a URL.
CODE = re.compile(r"[\w.-]{1,64}")
# One address: a local part and a domain of labels; no spaces, quotes, angle brackets or controls.
EMAIL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                   r"[A-Za-z]{2,63}")
_LINE_OK = {"\n", "\t"}  # in free text; "\r" only as part of "\r\n"


def _bad_char(ch: str) -> bool:
    """Control (Cc), format (Cf: bidi overrides, zero-width), line/paragraph separators, surrogates, unassigned."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn")


def _char_name(ch: str) -> str:
    names = {"\n": "换行符", "\r": "回车符", "\t": "制表符", "\x00": "空字符（NUL）", "\u2028": "行分隔符 U+2028",
             "\u2029": "段落分隔符 U+2029"}
    return names.get(ch, f"控制字符 U+{ord(ch):04X}")


def check_name(value: str, what: str, kind: str = "org_name") -> str | None:
    """A one-line name: no control characters at all, not empty, at most the column's length."""
    lim = TEXT[kind]
    if not value.isprintable():  # isprintable() is False for every category _bad_char refuses (and Zs): fast path
        for ch in value:
            if _bad_char(ch):
                return f"{what}含有不允许的{_char_name(ch)}"
    if len(value.strip()) < lim.min_len:
        return f"{what}不能为空"
    if len(value) > lim.max_len:
        return f"{what}过长：{len(value)} 个字符，最多 {lim.max_len} 个"
    return None


def check_text(value: str, what: str, kind: str = "text") -> str | None:
    """Free text (several lines allowed): no other control characters; at most the limit's length."""
    lim = TEXT[kind]
    for i, ch in enumerate("" if value.isprintable() else value):  # see check_name
        if ch in _LINE_OK or (ch == "\r" and value[i + 1: i + 2] == "\n"):
            continue
        if _bad_char(ch):
            return f"{what}含有不允许的{_char_name(ch)}"
    if len(value) > lim.max_len:
        return f"{what}过长：{len(value)} 个字符，最多 {lim.max_len} 个"
    return None


def check_code(value: str, what: str) -> str | None:
    """A code of any kind: letters, digits, ``-``, ``_`` and ``.``; 1–64 characters; not starting with ``.``."""
    if not value:
        return f"{what}不能为空"
    if len(value) > TEXT["code"].max_len:
        return f"{what}过长：{len(value)} 个字符，最多 {TEXT['code'].max_len} 个"
    if not CODE.fullmatch(value) or value.startswith("."):
        return f"{what}只能包含字母、数字、点、下划线和短横线（最多 64 个字符）"
    return None


def check_email(value: str, what: str = "电子邮箱") -> str | None:
    if any(_bad_char(ch) for ch in value):
        return f"{what}含有不允许的控制字符"
    if len(value) > TEXT["email"].max_len:
        return f"{what}过长：{len(value)} 个字符，最多 {TEXT['email'].max_len} 个"
    if not EMAIL.fullmatch(value) or ".." in value:
        return f"{what}不是有效的电子邮箱地址"
    return None


def check_int(value: int, what: str, kind: str = "int4") -> str | None:
    lim = INT[kind]
    if not lim.lo <= value <= lim.hi:
        return f"{what}须在 {lim.lo}–{lim.hi} 之间"
    return None


def parse_int(raw: str, what: str, kind: str) -> tuple[int | None, str | None]:
    """A whole number within the field's range, from text (import cells, form fields)."""
    s = raw.strip()
    if not re.fullmatch(r"[+-]?\d{1,20}", s):
        return None, f"{what}须为整数"
    n = int(s)
    problem = check_int(n, what, kind)
    return (None, problem) if problem else (n, None)


def date_range(year: int) -> tuple[dt.date, dt.date]:
    """The dates a campaign of ``year`` may set: from its year's start to the end of the next year."""
    return dt.date(year, 1, 1), dt.date(year + YEARS_AFTER_CAMPAIGN, 12, 31)


def check_date(value: dt.date, what: str, year: int) -> str | None:
    lo, hi = date_range(year)
    if not lo <= value <= hi:
        return f"{what} {value} 超出本活动的合理范围（{lo} 至 {hi}）"
    return None


def require(problem: str | None, field: str | None = None) -> None:
    """Raise :class:`InvalidInput` when there is a problem; ``field`` (the data's field name) lets a page mark it."""
    if problem:
        raise InvalidInput.about(field, problem, key="limit") if field else InvalidInput(problem)


def clean_email(value: str, what: str = "电子邮箱") -> str:
    v = value.strip().lower()
    require(check_email(v, what))
    return v


def _data_ok(data: Any, depth: int) -> bool:
    """:func:`check_data` finds nothing: the same rules without building a path for every value."""
    if depth > 16:
        return False
    if isinstance(data, str):
        return check_text(data, "") is None
    if isinstance(data, Mapping):
        return all(check_name(str(k), "", "org_name") is None and _data_ok(v, depth + 1) for k, v in data.items())
    if isinstance(data, list):
        return all(_data_ok(v, depth + 1) for v in data)
    if isinstance(data, int) and not isinstance(data, bool):
        return check_int(data, "") is None
    return not (isinstance(data, float) and not math.isfinite(data))


def check_data(data: Any, where: str = "data", depth: int = 0) -> str | None:
    """Every string inside free-form record data: free-text rules; nesting at most 16 levels."""
    if _data_ok(data, depth):  # the usual case; the walk names the first problem's place
        return None
    return _check_data_walk(data, where, depth)


def _check_data_walk(data: Any, where: str, depth: int) -> str | None:
    if depth > 16:
        return f"{where} 嵌套层数过多"
    if isinstance(data, str):
        return check_text(data, where)
    if isinstance(data, Mapping):
        for k, v in data.items():
            p = check_name(str(k), f"{where} 的字段名", "org_name") or _check_data_walk(v, f"{where}.{k}", depth + 1)
            if p:
                return p
    elif isinstance(data, list):
        for i, v in enumerate(data):
            p = _check_data_walk(v, f"{where}[{i}]", depth + 1)
            if p:
                return p
    elif isinstance(data, int) and not isinstance(data, bool):
        return check_int(data, where)
    elif isinstance(data, float) and not math.isfinite(data):
        return f"{where} 须为有限的数字"
    return None


# --- pydantic errors in Chinese: the one table is workflow.errors.PYDANTIC_MESSAGES -----------------------


def describe(err: Mapping[str, Any]) -> str:
    """One pydantic error (its ``type`` and ``ctx``) in Chinese; the offending input is never repeated."""
    return pydantic_text(err)


def location(err: Mapping[str, Any], skip: tuple[str, ...] = ("body", "query", "path", "header", "cookie")) -> str:
    """The field path of a pydantic error (``data.items.0.problem``); ``(整体)`` for the whole body."""
    parts = [str(p)[:64] for p in err.get("loc", ()) if p not in skip]
    return ".".join(parts) or "(整体)"

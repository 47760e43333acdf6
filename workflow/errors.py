"""Errors of branchflow, translated once at each edge (CLI exit code, HTTP status).

    BranchflowError                      exit 1   HTTP 400   (every error may carry ``problems``: a list of
    │                                                          :class:`Problem` — field, item number, key, words)
    ├── NotFound (LookupError)           exit 3   HTTP 404   unknown branch, campaign, person …
    ├── InvalidInput (ValueError)        exit 2   HTTP 422   bad file, bad record, bad campaign
    │   ├── ImportRejected               (carries every bad row, column and reason)
    │   └── CalendarUnknown              (a year the working-day calendar does not know)
    ├── Forbidden (PermissionError)      exit 4   HTTP 403   the actor's role may not do this
    ├── TransitionRefused                exit 5   HTTP 409   exit criteria unmet / illegal move
    └── Conflict                         exit 6   HTTP 409   someone else changed the case first
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Loc = tuple[str | int, ...]


@dataclass(frozen=True, kw_only=True)
class Problem:
    """One thing wrong with the input: where (``loc``: the field path in the data, list positions counted from
    0 as in the data), what (``key``: a stable message key, pydantic's ``type`` or ours, with ``params``) and
    the Chinese sentence for people (``message``, naming the field by its label, items counted from 1)."""

    loc: Loc = ()
    key: str = "invalid"
    params: Mapping[str, object] = field(default_factory=dict)
    message: str = ""

    @property
    def field(self) -> str:
        """The path with list positions counted from 1: ``items[1].measure`` is the first item's measure."""
        out = ""
        for p in self.loc:
            out += f"[{p + 1}]" if isinstance(p, int) else (f".{p}" if out else str(p))
        return out

    @property
    def item(self) -> int | None:
        """The (first) list item the problem is in, counted from 1; ``None`` outside lists."""
        return next((p + 1 for p in self.loc if isinstance(p, int)), None)

    def to_dict(self) -> dict[str, object]:
        return {"field": self.field, "item": self.item, "key": self.key, "params": dict(self.params),
                "message": self.message}

    def __str__(self) -> str:
        return self.message


def _problem_lines(problems: Sequence[Problem], limit: int = 20) -> str:
    lines = [f"  {p.message}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  …… 另有 {len(problems) - limit} 处错误")
    return "\n".join(lines)


class BranchflowError(Exception):
    """操作失败。"""

    exit_code = 1
    http_status = 400
    problems: list[Problem]

    def __init__(self, message: str | None = None, *, problems: Sequence[Problem] = ()) -> None:
        if not hasattr(self, "problems") or problems:
            self.problems = list(problems)
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"error": type(self).__name__, "message": self.message}
        if self.problems:
            d["problems"] = [p.to_dict() for p in self.problems]
        return d


class NotFound(BranchflowError, LookupError):
    """找不到对象。"""

    exit_code = 3
    http_status = 404


class InvalidInput(BranchflowError, ValueError):
    """输入数据无效。"""

    exit_code = 2
    http_status = 422


    @classmethod
    def about(cls, loc: str | Loc, message: str, *, key: str = "invalid", **params: object) -> InvalidInput:
        """The error for one field: ``InvalidInput.about("text", "异议内容不能为空", key="missing")``."""
        where = (loc,) if isinstance(loc, str) else tuple(loc)
        return cls(message, problems=[Problem(loc=where, key=key, params=params, message=message)])


@dataclass(frozen=True, kw_only=True)
class RowProblem(Problem):
    """One problem in an imported file: the 1-based row (header = row 1), the column and what is wrong."""

    row: int
    column: str
    problem: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "loc", (self.column,))
        object.__setattr__(self, "key", "import_row")
        object.__setattr__(self, "message", str(self))

    def __str__(self) -> str:
        return f"第 {self.row} 行 [{self.column}]: {self.problem}"


class ImportRejected(InvalidInput):
    """导入被拒绝：文件中有错误，未导入任何一行。"""

    def __init__(self, problems: Sequence[RowProblem]) -> None:
        self.problems: list[RowProblem] = list(problems)  # type: ignore[assignment]
        lines = "\n".join(f"  {p}" for p in self.problems[:50])
        more = f"\n  …… 另有 {len(self.problems) - 50} 处错误" if len(self.problems) > 50 else ""
        super().__init__(f"导入被拒绝，未导入任何一行（共 {len(self.problems)} 处错误）：\n{lines}{more}")

    def to_dict(self) -> dict[str, object]:
        d = super().to_dict()
        d["problems"] = [{"row": p.row, "column": p.column, "problem": p.problem, "field": p.column, "item": p.row,
                          "key": p.key, "params": {}, "message": p.message} for p in self.problems if isinstance(p, RowProblem)]
        return d


class CalendarUnknown(InvalidInput):
    """工作日历不包含该年份：请在活动文件中列出该年的节假日和调休工作日。"""


class Forbidden(BranchflowError, PermissionError):
    """无权执行此操作。"""

    exit_code = 4
    http_status = 403


@dataclass(frozen=True, kw_only=True)
class Unmet:
    """One exit criterion that is not met: a stable code and a Chinese sentence saying what is missing."""

    code: str
    message: str
    fields: tuple[Loc, ...] = ()  # the data's fields it is about (("scores", "A1"),), so a page can mark them

    def __str__(self) -> str:
        return self.message


class TransitionRefused(BranchflowError):
    """不能执行该环节流转。"""

    exit_code = 5
    http_status = 409

    def __init__(
        self,
        message: str,
        *,
        unmet: Sequence[Unmet] = (),
        allowed_roles: Sequence[str] = (),
    ) -> None:
        self.unmet = list(unmet)
        self.allowed_roles = list(allowed_roles)
        parts = [message]
        if self.unmet:
            parts.append("未满足的条件：\n" + "\n".join(f"  - {u.message}" for u in self.unmet))
        if self.allowed_roles:
            parts.append("可执行该操作的角色：" + "、".join(self.allowed_roles))
        super().__init__("\n".join(parts))

    def to_dict(self) -> dict[str, object]:
        d = super().to_dict()
        d["unmet"] = [{"code": u.code, "message": u.message, **({"fields": [Problem(loc=f).field for f in u.fields]} if u.fields else {})}
                      for u in self.unmet]
        d["allowed_roles"] = self.allowed_roles
        return d


class Conflict(BranchflowError):
    """该支部已被他人同时修改，请刷新后重试。"""

    exit_code = 6
    http_status = 409


# --- pydantic errors in Chinese: the one mapping (by ``type`` and ``ctx``, never by pydantic's English) -------

PYDANTIC_MESSAGES: dict[str, str] = {
    "missing": "必须填写",
    "extra_forbidden": "不是可填写的字段",
    "string_type": "须为文字",
    "string_too_short": "至少 {min_length} 个字符",
    "string_too_long": "最多 {max_length} 个字符",
    "string_pattern_mismatch": "格式不符合要求",
    "int_type": "须为整数",
    "int_parsing": "须为整数",
    "int_parsing_size": "整数超出范围",
    "int_from_float": "须为整数",
    "float_type": "须为数字",
    "float_parsing": "须为数字",
    "finite_number": "须为有限的数字",
    "bool_type": "须为“是”或“否”（true 或 false）",
    "bool_parsing": "须为“是”或“否”（true 或 false）",
    "greater_than": "须大于 {gt}",
    "greater_than_equal": "须不小于 {ge}",
    "less_than": "须小于 {lt}",
    "less_than_equal": "须不大于 {le}",
    "multiple_of": "须为 {multiple_of} 的倍数",
    "date_type": "须为日期（示例：2026-04-25）",
    "date_parsing": "须为日期（示例：2026-04-25）",
    "date_from_datetime_parsing": "须为日期（示例：2026-04-25）",
    "date_from_datetime_inexact": "须为日期，不含时间",
    "datetime_type": "须为时间（示例：2026-04-25T09:00+08:00）",
    "datetime_parsing": "须为时间（示例：2026-04-25T09:00+08:00）",
    "datetime_from_date_parsing": "须为时间（示例：2026-04-25T09:00+08:00）",
    "time_zone_naive": "须带时区（示例：2026-04-25T09:00+08:00）",
    "enum": "可选值：{expected}",
    "literal_error": "可选值：{expected}",
    "dict_type": "须为一组字段（JSON 对象）",
    "list_type": "须为列表",
    "tuple_type": "须为列表",
    "set_type": "须为列表",
    "model_type": "须为一组字段（JSON 对象）",
    "model_attributes_type": "须为一组字段（JSON 对象）",
    "too_short": "至少 {min_length} 项",
    "too_long": "最多 {max_length} 项",
    "json_invalid": "不是有效的 JSON",
    "json_type": "不是有效的 JSON",
    "url_parsing": "不是有效的网址",
    "url_type": "不是有效的网址",
    "uuid_parsing": "格式无效",
    "none_required": "不应填写",
    "frozen_instance": "不可修改",
    "frozen_field": "不可修改",
    "union_tag_invalid": "类型无效",
    "value_error": "值无效",
    "assertion_error": "值无效",
}
_CJK = ("\u4e00", "\u9fff")


def _has_cjk(text: str) -> bool:
    return any(_CJK[0] <= ch <= _CJK[1] for ch in text)


_PARAMS = ("min_length", "max_length", "gt", "ge", "lt", "le", "multiple_of", "expected", "pattern")


def _safe_params(ctx: Mapping[str, Any]) -> dict[str, object]:
    """The rule's parameters (limits, choices): never pydantic's English ``error`` text or the input."""
    out: dict[str, object] = {}
    for k, v in ctx.items():
        if k not in _PARAMS:
            continue
        if isinstance(v, bool) or not isinstance(v, int | float):
            out[k] = str(v)[:200]
        else:
            out[k] = v if not isinstance(v, float) or math.isfinite(v) else str(v)
    return out


def pydantic_text(err: Mapping[str, Any]) -> str:
    """One pydantic error's rule in Chinese, from its ``type`` and ``ctx`` (the input is never repeated).

    A ``value_error`` raised by our own validators carries a Chinese sentence (``ctx.error``): that is kept;
    pydantic's English never is."""
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    if kind in ("value_error", "assertion_error"):
        e = ctx.get("error")
        text = str(e)[:300] if e is not None else ""
        return text if text and _has_cjk(text) else "值无效"
    template = PYDANTIC_MESSAGES.get(kind)
    if template is None:
        return "值无效"
    params = _safe_params(ctx)
    if kind in ("string_too_short", "too_short") and params.get("min_length") == 1:
        return "不能为空"
    if kind in ("enum", "literal_error") and "expected" in params:
        from states.labels import value_label

        values = str(params["expected"]).replace("' or '", "', '").strip("'").split("', '")
        params["expected"] = "、".join(f"{v}（{label}）" if (label := value_label(v)) else v for v in values)
    shown = {k: (f"{v:g}" if isinstance(v, float) else v) for k, v in params.items()}  # 100, not 100.0
    try:
        return template.format(**shown)
    except (KeyError, IndexError, ValueError):
        return template.split("{")[0] or "值无效"


Labeller = Callable[[Loc], str]
API_SKIP: tuple[str, ...] = ("body", "query", "path", "header", "cookie")


def default_labels(loc: Loc) -> str:
    """The stage records' field labels (states/labels.py), loaded when first needed (states imports us)."""
    from states.labels import label_of

    return label_of(loc)


def problems_from_pydantic(errors: Iterable[Mapping[str, Any]], *, labels: Labeller | None = None,
                           skip: tuple[str, ...] = API_SKIP, prefix: Loc = ()) -> list[Problem]:
    """Pydantic's (or FastAPI's) error list as :class:`Problem` s: field label + rule, in Chinese."""
    labeller = labels or default_labels
    out = []
    for err in errors:
        loc = (*prefix, *(p if isinstance(p, int) else str(p)[:64] for p in err.get("loc", ()) if p not in skip))
        text = pydantic_text(err)
        kind = str(err.get("type", ""))
        where = labeller(loc) if loc else ""
        if kind == "extra_forbidden" and loc:
            name = str(loc[-1])
            parent = labeller(loc[:-1]) if loc[:-1] else ""
            message = f"{parent + '中' if parent else ''}“{name}”不是可填写的字段"
        else:
            message = f"{where}：{text}" if where else text
        out.append(Problem(loc=loc, key=kind or "invalid", params=_safe_params(err.get("ctx") or {}),
                           message=message))
    return out


def invalid_from_pydantic(errors: Sequence[Mapping[str, Any]], what: str, *, labels: Labeller | None = None,
                          skip: tuple[str, ...] = API_SKIP, prefix: Loc = ()) -> InvalidInput:
    """The :class:`InvalidInput` for a failed validation of ``what`` (“异议”, “请求数据”), one line a problem."""
    problems = problems_from_pydantic(errors, labels=labels, skip=skip, prefix=prefix)
    return InvalidInput(f"{what}无效：\n" + _problem_lines(problems), problems=problems)


# --- parser errors in Chinese: JSON (``--data``, request files) and TOML (campaign and calendar files) ---------

_JSON_REASONS: dict[str, str] = {  # json.JSONDecodeError.msg (the module's fixed message ids)
    "Expecting value": "此处缺少值",
    "Expecting property name enclosed in double quotes": "字段名须用英文双引号括起",
    "Expecting ',' delimiter": "缺少逗号",
    "Expecting ':' delimiter": "缺少冒号",
    "Extra data": "数据结束后还有多余的内容",
    "Unterminated string starting at": "字符串缺少结尾的引号",
    "Invalid control character at": "字符串中含有控制字符",
    "Invalid \\escape": "反斜杠转义无效",
    "Invalid \\uXXXX escape": "反斜杠转义无效",
    "Illegal trailing comma before end of object": "对象末尾多了逗号",
    "Illegal trailing comma before end of array": "列表末尾多了逗号",
}
_TOML_REASONS: tuple[tuple[str, str], ...] = (  # tomllib's messages, by their fixed beginnings
    ("Expected '=' after a key", "键后缺少“=”"),
    ("Invalid value", "值无效（文字须用引号括起，日期写作 2026-04-18）"),
    ("Invalid statement", "无法识别的语句"),
    ("Cannot overwrite a value", "同一个键写了两次"),
    ("Cannot declare", "同一节写了两次"),
    ("Cannot mutate immutable namespace", "不能修改已定义的表"),
    ("Unclosed array", "列表缺少结尾的“]”"),
    ("Unclosed inline table", "内联表缺少结尾的“}”"),
    ("Unterminated string", "字符串缺少结尾的引号"),
    ("Expected ']' at the end of a table declaration", "节名缺少结尾的“]”"),
    ("Expected newline or end of document after a statement", "一行只能写一项"),
    ("Illegal character", "含有不允许的字符"),
    ("Invalid date or datetime", "日期或时间无效"),
    ("Invalid initial character for a key part", "键的写法无效"),
    ("Unescaped '\\' in a string", "字符串中的反斜杠须写成“\\\\”"),
)


def from_json_error(exc: Any, what: str) -> InvalidInput:
    """A :class:`json.JSONDecodeError` as a Chinese error with its line and column (``what``: “文件 a.json”)."""
    line, col = int(getattr(exc, "lineno", 0) or 0), int(getattr(exc, "colno", 0) or 0)
    reason = _JSON_REASONS.get(str(getattr(exc, "msg", "")), "语法错误")
    where = f"第 {line} 行第 {col} 列" if line else ""
    message = f"{what}不是有效的 JSON：{where}{reason}"
    return InvalidInput(message, problems=[Problem(key="json_invalid", params={"line": line, "column": col},
                                                   message=message)])


def from_toml_error(exc: Exception, what: str) -> InvalidInput:
    """A :class:`tomllib.TOMLDecodeError` as a Chinese error with its line and column."""
    import re

    text = str(exc)
    m = re.search(r"\(at line (\d+), column (\d+)\)", text)
    line, col = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    where = f"第 {line} 行第 {col} 列" if m else ("文件末尾" if "end of document" in text else "")
    reason = next((zh for en, zh in _TOML_REASONS if text.startswith(en)), "语法错误")
    message = f"{what}不是有效的 TOML：{where}{reason}"
    return InvalidInput(message, problems=[Problem(key="toml_invalid", params={"line": line, "column": col},
                                                   message=message)])

"""Errors of branchflow, translated once at each edge (CLI exit code, HTTP status).

    BranchflowError                      exit 1   HTTP 400
    ├── NotFound (LookupError)           exit 3   HTTP 404   unknown branch, campaign, person …
    ├── InvalidInput (ValueError)        exit 2   HTTP 422   bad file, bad record, bad campaign
    │   ├── ImportRejected               (carries every bad row, column and reason)
    │   └── CalendarUnknown              (a year the working-day calendar does not know)
    ├── Forbidden (PermissionError)      exit 4   HTTP 403   the actor's role may not do this
    ├── TransitionRefused                exit 5   HTTP 409   exit criteria unmet / illegal move
    └── Conflict                         exit 6   HTTP 409   someone else changed the case first
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class BranchflowError(Exception):
    """操作失败。"""

    exit_code = 1
    http_status = 400

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def to_dict(self) -> dict[str, object]:
        return {"error": type(self).__name__, "message": self.message}


class NotFound(BranchflowError, LookupError):
    """找不到对象。"""

    exit_code = 3
    http_status = 404


class InvalidInput(BranchflowError, ValueError):
    """输入数据无效。"""

    exit_code = 2
    http_status = 422


@dataclass(frozen=True, kw_only=True)
class RowProblem:
    """One problem in an imported file: the 1-based row (header = row 1), the column and what is wrong."""

    row: int
    column: str
    problem: str

    def __str__(self) -> str:
        return f"第 {self.row} 行 [{self.column}]: {self.problem}"


class ImportRejected(InvalidInput):
    """导入被拒绝：文件中有错误，未导入任何一行。"""

    def __init__(self, problems: Sequence[RowProblem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems[:50])
        more = f"\n  …… 另有 {len(self.problems) - 50} 处错误" if len(self.problems) > 50 else ""
        super().__init__(f"导入被拒绝，未导入任何一行（共 {len(self.problems)} 处错误）：\n{lines}{more}")

    def to_dict(self) -> dict[str, object]:
        d = super().to_dict()
        d["problems"] = [{"row": p.row, "column": p.column, "problem": p.problem} for p in self.problems]
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
        d["unmet"] = [{"code": u.code, "message": u.message} for u in self.unmet]
        d["allowed_roles"] = self.allowed_roles
        return d


class Conflict(BranchflowError):
    """该支部已被他人同时修改，请刷新后重试。"""

    exit_code = 6
    http_status = 409

"""Stage 3 — 党员群众测评 (member evaluation): ballots or their tallies, and peer / superior scores."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from states.base import Record, Role, Stage, StageSpec
from workflow.errors import Unmet


class Ballot(Record):
    rating: float = Field(ge=0, le=100)
    satisfied_with_members: bool
    satisfied_with_secretary: bool


class Tally(Record):
    """A count of ballots with the average rating (0–100) and the two satisfaction rates (0–1)."""

    ballots: int = Field(ge=0)
    rating: float = Field(ge=0, le=100)
    satisfaction_members: float = Field(ge=0, le=1)
    satisfaction_secretary: float = Field(ge=0, le=1)


class OnlineBallot(Record):
    """What closing an online ballot adds to its tally: the ballot, who could vote, and the commitment.

    ``commitment`` is the sha256 of the canonical, sorted anonymous ballots (see workflow/ballots.py);
    ``export_sha256`` the hash of the published export file anyone can recount from.
    """

    ballot_id: int = Field(ge=1)
    eligible: int = Field(ge=0)
    participation: float = Field(ge=0, le=1)
    commitment: str = Field(pattern=r"^[0-9a-f]{64}$")
    export_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    closed_by: str = ""


SOURCE_LABELS = {"online": "网上测评（一次性测评码）", "typed": "纸质选票录入"}


class MemberEvaluationRecord(Record):
    """Either ``ballots`` (each one) or ``tally``; plus ``peer`` and ``superior`` scores where used.

    ``source`` says where a tally came from: ``typed`` (paper ballots typed in — the default) or
    ``online`` (written only by closing an online ballot, with its ``online`` commitment block).
    """

    ballots: list[Ballot] | None = None
    tally: Tally | None = None
    source: Literal["online", "typed"] | None = None
    online: OnlineBallot | None = None
    peer: float | None = Field(default=None, ge=0, le=100)
    superior: float | None = Field(default=None, ge=0, le=100)

    @model_validator(mode="after")
    def _one_form(self) -> MemberEvaluationRecord:
        if self.ballots is not None and self.tally is not None:
            raise ValueError("只能填写逐张选票（ballots）或汇总（tally）之一")
        if (self.source == "online") != (self.online is not None):
            raise ValueError("网上测评结果须同时带有测评编号和承诺值（online）")
        if self.online is not None and self.tally is None:
            raise ValueError("网上测评结果须带有汇总（tally）")
        return self


def validate(payload: dict[str, Any], campaign: Any, facts: Any) -> list[str]:
    """Filed by hand (CLI, API, page): an online result is written only by closing its ballot."""
    if payload.get("source") == "online" or payload.get("online") is not None:
        return ["source: 网上测评结果只能由关闭网上测评自动写入，不能手工填报"]
    return []


def tally_of(ballots: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(ballots)
    if n == 0:
        return {"ballots": 0, "rating": 0.0, "satisfaction_members": 0.0, "satisfaction_secretary": 0.0}
    return {
        "ballots": n,
        "rating": round(sum(b["rating"] for b in ballots) / n, 4),
        "satisfaction_members": round(sum(1 for b in ballots if b["satisfied_with_members"]) / n, 4),
        "satisfaction_secretary": round(sum(1 for b in ballots if b["satisfied_with_secretary"]) / n, 4),
    }


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Individual ballots accumulate across filings; a tally replaces what was there."""
    out = dict(old)
    if new.get("ballots") is not None:
        ballots = list(old.get("ballot_list", [])) + list(new["ballots"])
        out["ballot_list"] = ballots
        out["tally"] = tally_of(ballots)
        out.pop("source", None)
        out.pop("online", None)
    elif new.get("tally") is not None:
        out.pop("ballot_list", None)
        out["tally"] = new["tally"]
        # no ``source`` means typed (records filed before online ballots existed replay unchanged)
        for k in ("source", "online"):
            if new.get(k) is not None:
                out[k] = new[k]
            else:
                out.pop(k, None)
    for k in ("peer", "superior"):
        if new.get(k) is not None:
            out[k] = new[k]
    return out


def source_of(rec: dict[str, Any]) -> str:
    """``online`` or ``typed`` for a member-evaluation record (state form)."""
    return "online" if rec.get("source") == "online" else "typed"


def can_leave(state: dict[str, Any], campaign: Any, facts: Any, *, now: Any = None) -> list[Unmet]:
    rec = state["records"].get(Stage.member_evaluation.value, {})
    cfg = campaign.member_evaluation
    needed = max(cfg.min_ballots, -(-int(cfg.min_ballot_ratio * 1000 * facts.member_count) // 1000))
    got = rec.get("tally", {}).get("ballots", 0)
    unmet = []
    if got < needed:
        unmet.append(Unmet(code="member_evaluation.ballots", message=f"测评票数 {got} 张，少于要求的 {needed} 张"))
    labels = {"peer": "分类互评得分", "superior": "上级考评得分"}
    for source in campaign.grading.weights.required_sources:
        if source in labels and rec.get(source) is None:
            unmet.append(Unmet(code=f"member_evaluation.{source}", message=f"缺少{labels[source]}"))
    return unmet


SPEC = StageSpec(
    stage=Stage.member_evaluation,
    record_model=MemberEvaluationRecord,
    recorders=frozenset({Role.general_branch_secretary, Role.org_department}),
    advancers=frozenset({Role.general_branch_secretary, Role.org_department}),
    can_leave=can_leave,
    deadline_key="member_evaluation",
    extra={"merge": merge, "validate": validate},
)

"""The way out of every refusal on the branch page: each unmet criterion links to the field or the button
that satisfies it when the person may act on it, and else says who must act (no dead ends, issue 16)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Way:
    """Where on the branch page a criterion is met: the anchor, the permission it needs, who else may act,
    the link's words, and the form field to mark."""

    anchor: str
    perm: str
    who: str
    text: str
    field: str | None = None


WAYS: dict[str, Way] = {
    "survey.findings": Way("stage-form", "record", "党总支书记", "填写调查要点"),
    "survey.last_reelection": Way("last_reelection", "record", "党总支书记", "填写上次换届日期", "last_reelection"),
    "survey.last_activity": Way("last_activity", "record", "党总支书记", "填写最近一次组织生活日期", "last_activity"),
    "survey.secretary_violation": Way("secretary_violation", "record", "党总支书记", "填写支部书记有无严重违纪",
                                      "secretary_violation"),
    "self_assessment.scores": Way("stage-form", "record", "党支部书记", "逐项打分"),
    "self_assessment.meeting": Way("meeting_date", "record", "党支部书记", "填写支部大会日期", "meeting_date"),
    "self_assessment.attendance": Way("attendance", "record", "党支部书记", "填写到会人数", "attendance"),
    "member_evaluation.ballots": Way("ballots", "record", "党总支书记", "录入测评票数", "ballots"),
    "member_evaluation.peer": Way("peer", "record", "党总支书记", "录入分类互评得分", "peer"),
    "member_evaluation.superior": Way("superior", "record", "党总支书记", "录入上级考评得分", "superior"),
    "committee_grading.grade": Way("grading", "grade", "党委委员或组织部", "计算得分和等级"),
    "committee_grading.quorum": Way("grading", "sign", "党委委员", "签字确认等级"),
    "publicity.not_started": Way("publicity", "publish", "组织部", "发布公示"),
    "publicity.window": Way("publicity", "", "组织部", "公示期满后推进"),
    "publicity.objections": Way("objections", "resolve", "组织部", "处理异议"),
    "rectification.plan": Way("problem_1", "record", "党支部书记", "填写整改事项", "problem_1"),
    "rectification.submitted": Way("submitted", "record", "党支部书记", "勾选“提交整改方案”并保存", "submitted"),
    "rectification.items": Way("items", "complete", "党支部书记", "逐项登记完成情况"),
    "rectification.self_analysis": Way("self_analysis", "record", "党支部书记", "填写自我剖析", "self_analysis"),
    "acceptance.inspection": Way("stage-form", "record", "党总支书记", "记录检查验收"),
    "acceptance.failed": Way("stage-form", "record", "党总支书记", "记录检查验收"),
}


def ways_out(unmet: list[Any], perm: dict[str, bool]) -> list[dict[str, Any]]:
    """The unmet criteria (``Unmet`` or their dicts) with a link (``href``) or who must act (``who``)."""
    out = []
    for u in unmet:
        code = u["code"] if isinstance(u, dict) else u.code
        message = u["message"] if isinstance(u, dict) else u.message
        way = WAYS.get(code)
        row: dict[str, Any] = {"code": code, "message": message, "href": None, "text": None, "who": None}
        if way is not None:
            if way.perm and perm.get(way.perm):
                row.update(href=f"#{way.anchor}", text=way.text)
            else:
                row["who"] = way.who
        out.append(row)
    return out


def marked_fields(unmet: list[Any]) -> set[str]:
    """The form fields the unmet criteria are about (the page marks them)."""
    out = set()
    for u in unmet:
        way = WAYS.get(u["code"] if isinstance(u, dict) else u.code)
        if way is not None and way.field:
            out.add(way.field)
    return out

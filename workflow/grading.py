"""Grading, pure: rubric scores, weighted sources, veto rules and the grade scale → an explained grade.

The result is a plain JSON-able dict (it goes into the audit log as it is), shaped:

    {"rubric": str, "sources": {source: {"label", "score", "weight", "weighted"}}, "total": float,
     "scale_grade": code, "boundary": "> 85", "veto": [{"rule", "label", "facts"}],
     "grade": code, "grade_label": str, "standards": {...}, "as_of": "YYYY-MM-DD"}
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from workflow.campaign import SOURCE_LABELS, Campaign, GradeBand
from workflow.errors import InvalidInput

VETO_LABELS = {
    "secretary_violation": "支部书记近两年内受到严重违纪处分",
    "reelection_overdue": "支部长期未按期换届",
    "inactive": "支部一年以上未开展活动",
    "satisfaction_members": "群众对党员发挥作用满意率低于底线",
    "satisfaction_secretary": "党员对支部书记满意率低于底线",
}


def _date(v: Any) -> dt.date | None:
    if v is None or isinstance(v, dt.date):
        return v
    return dt.date.fromisoformat(str(v))


def _years_after(day: dt.date, years: float) -> dt.date:
    """``day`` moved on by ``years``: whole years on the calendar (29 Feb → 28 Feb), any fraction in days.

    A term of N years ends on the N-th anniversary, so re-election on that day is not yet overdue.
    """
    whole = int(years)
    try:
        moved = day.replace(year=day.year + whole)
    except ValueError:
        moved = day.replace(year=day.year + whole, day=28)
    return moved + dt.timedelta(days=round((years - whole) * 365.25))


def veto_facts(branch: Any, survey: dict[str, Any]) -> dict[str, Any]:
    """The facts the veto rules read: the survey's confirmed values win over the imported ones."""

    def pick(key: str) -> Any:
        v = survey.get(key)
        return v if v is not None else getattr(branch, key, None)

    return {
        "last_reelection": _date(pick("last_reelection")),
        "last_activity": _date(pick("last_activity")),
        "secretary_violation": bool(pick("secretary_violation")),
    }


def fired_vetoes(
    campaign: Campaign, facts: dict[str, Any], tally: dict[str, Any] | None, as_of: dt.date
) -> list[dict[str, Any]]:
    rules = campaign.grading.veto
    fired: list[dict[str, Any]] = []

    def fire(rule: str, **why: Any) -> None:
        fired.append({"rule": rule, "label": VETO_LABELS[rule], "facts": why})

    if rules.secretary_violation and facts["secretary_violation"]:
        fire("secretary_violation", secretary_violation=True)
    if rules.reelection_overdue_years is not None:
        last = facts["last_reelection"]
        if last is None or as_of > _years_after(last, rules.reelection_overdue_years):
            fire(
                "reelection_overdue",
                last_reelection=last.isoformat() if last else None,
                limit_years=rules.reelection_overdue_years,
            )
    if rules.inactive_days is not None:
        last = facts["last_activity"]
        if last is None or (as_of - last).days > rules.inactive_days:
            fire("inactive", last_activity=last.isoformat() if last else None, limit_days=rules.inactive_days)
    if tally and tally.get("ballots"):
        if rules.min_satisfaction_members is not None and tally["satisfaction_members"] < rules.min_satisfaction_members:
            fire("satisfaction_members", rate=tally["satisfaction_members"], floor=rules.min_satisfaction_members)
        if (
            rules.min_satisfaction_secretary is not None
            and tally["satisfaction_secretary"] < rules.min_satisfaction_secretary
        ):
            fire("satisfaction_secretary", rate=tally["satisfaction_secretary"], floor=rules.min_satisfaction_secretary)
    return fired


def source_scores(campaign: Campaign, branch_type: str, records: dict[str, Any]) -> dict[str, float | None]:
    rubric = campaign.grading.rubric_for(branch_type)
    scores = records.get("self_assessment", {}).get("scores", {})
    self_score = sum(float(scores.get(i.id, 0)) for i in rubric.items) if scores else None
    me = records.get("member_evaluation", {})
    tally = me.get("tally")
    return {
        "self": self_score,
        "members": float(tally["rating"]) if tally and tally.get("ballots") else None,
        "peer": me.get("peer"),
        "superior": me.get("superior"),
    }


def band_of(campaign: Campaign, score: float) -> GradeBand:
    return campaign.grading.scale.band_for(round(score, 6))


def grade(campaign: Campaign, branch: Any, records: dict[str, Any], *, as_of: dt.date) -> dict[str, Any]:
    """Compute the explained grade of one branch from its stage records; pure."""
    weights = campaign.grading.weights.as_dict()
    scores = source_scores(campaign, branch.branch_type, records)
    missing = [SOURCE_LABELS[s] for s, w in weights.items() if w > 0 and scores[s] is None]
    if missing:
        raise InvalidInput(f"无法计算得分，缺少：{'、'.join(missing)}")
    sources = {}
    total = 0.0
    for s, w in weights.items():
        if w <= 0:
            continue
        value = float(scores[s])  # type: ignore[arg-type]
        sources[s] = {"label": SOURCE_LABELS[s], "score": round(value, 4), "weight": w, "weighted": round(value * w, 4)}
        total += value * w
    total = round(total, 4)
    band = band_of(campaign, total)
    tally = records.get("member_evaluation", {}).get("tally")
    facts = veto_facts(branch, records.get("survey", {}))
    vetoes = fired_vetoes(campaign, facts, tally, as_of)
    final = campaign.grading.scale.lowest if vetoes else band
    std = campaign.grading.standards
    standards = {}
    if tally and tally.get("ballots"):
        for key, tkey in (("satisfaction_members", "satisfaction_members"), ("satisfaction_secretary", "satisfaction_secretary")):
            target = getattr(std, key)
            if target is not None:
                standards[key] = {"value": tally[tkey], "standard": target, "met": tally[tkey] >= target}
    return {
        "rubric": campaign.grading.rubric_for(branch.branch_type).name,
        "sources": sources,
        "total": total,
        "scale_grade": band.code,
        "scale_grade_label": band.grade,
        "boundary": band.boundary,
        "veto": vetoes,
        "grade": final.code,
        "grade_label": final.grade,
        "standards": standards,
        "as_of": as_of.isoformat(),
    }


def _fact_words(key: str, value: Any) -> str:
    """A veto's fact in words (never the record's key)."""
    if key == "secretary_violation":
        return "支部书记近两年有严重违纪" if value else "支部书记近两年无严重违纪"
    if key in ("rate", "floor"):
        return f"{'满意率' if key == 'rate' else '最低要求'} {float(value):.0%}"
    words = {"last_reelection": "上次换届", "limit_years": "换届期限（年）", "last_activity": "最近一次组织生活",
             "limit_days": "组织生活间隔上限（天）"}
    return f"{words.get(key, '有关情况')} {value if value is not None else '不详'}"


def explain(result: dict[str, Any]) -> list[str]:
    """Chinese lines explaining a grade record (for `show` and the history)."""
    lines = [f"评分标准：{result['rubric']}"]
    for s in result["sources"].values():
        lines.append(f"  {s['label']}：{s['score']:g} × 权重 {s['weight']:g} = {s['weighted']:g}")
    lines.append(f"  总分：{result['total']:g} → 按分数等级：{result['scale_grade_label']}（{result['boundary']}）")
    for v in result["veto"]:
        facts = "，".join(_fact_words(k, val) for k, val in v["facts"].items())
        lines.append(f"  一票否决：{v['label']}（{facts}）→ 定为最低等级")
    for key, s in result.get("standards", {}).items():
        name = "群众对党员满意率" if key == "satisfaction_members" else "党员对书记满意率"
        lines.append(f"  参考：{name} {s['value']:.0%}（标准 {s['standard']:.0%}，{'达标' if s['met'] else '未达标'}）")
    lines.append(f"  计算等级：{result['grade_label']}")
    return lines

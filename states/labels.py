"""The Chinese names of the stage records' fields (the models in states/*.py), for people.

``label_of(loc)`` names a field path the way a form does: ``("text",)`` → 异议内容,
``("items", 0, "measure")`` → 第 1 项整改事项的“主要整改措施”, ``("scores", "A1")`` → 第 A1 项得分,
``("findings", "org_setting", "ok")`` → 调查要点“组织设置是否合理”的“是否符合”. List items are counted from 1.
Field names no record uses fall back to the API bodies' names below, then to the name itself.
"""

from __future__ import annotations

from collections.abc import Sequence

FIELD_LABELS: dict[str, str] = {
    # survey
    "findings": "调查要点", "ok": "是否符合", "note": "说明", "last_reelection": "上次换届日期",
    "last_activity": "最近一次活动日期", "secretary_violation": "书记近两年是否有严重违纪",
    # self-assessment
    "scores": "评分", "meeting_date": "支部大会日期", "attendance": "到会人数", "comment": "说明",
    # member evaluation
    "ballots": "测评票", "tally": "测评汇总", "rating": "平均评分", "satisfied_with_members": "对党员发挥作用是否满意",
    "satisfied_with_secretary": "对支部书记是否满意", "satisfaction_members": "群众对党员发挥作用满意率",
    "satisfaction_secretary": "支部书记在党员中满意率", "source": "测评方式", "online": "网上测评",
    "peer": "分类互评得分", "superior": "上级考评得分", "eligible": "应参评人数", "participation": "参评率",
    # committee grading
    "grade": "等级", "reason": "理由",
    # publicity
    "text": "异议内容", "upheld": "是否成立", "start": "公示开始日期",
    # rectification
    "items": "整改事项", "problem": "存在的主要问题", "measure": "主要整改措施", "due": "完成整改时间",
    "contact": "定点联系人", "self_analysis": "自我剖析材料", "submitted": "提交整改方案", "item": "整改事项编号",
    "evidence": "佐证",
    # acceptance
    "passed": "验收结果", "summary": "书面总结", "inspected_on": "检查日期", "regrade_score": "再次定级得分",
    "new_deadline": "新的截止日期",
    # attachments
    "attachments": "附件", "sha256": "校验值", "size": "文件大小", "media_type": "文件类型", "name": "文件名",
    # the API's request bodies and queries
    "data": "填报数据", "files": "文件", "target": "附件所属", "expected_version": "版本号", "deadline": "截止日期", "stage": "环节", "email": "电子邮箱",
    "password": "密码", "general_branch": "党总支", "overdue": "是否逾期", "limit": "条数", "offset": "起始位置",
    "now": "时间", "campaign": "活动", "format": "格式", "at": "时间", "code": "编码", "branch": "党支部",
    "version": "版本号",
}
# Inside a container the same name can mean something else.
IN_CONTEXT: dict[tuple[str, str], str] = {
    ("tally", "ballots"): "有效票数",
    ("tally", "rating"): "平均评分",
}
# A list's items are counted with these words: 第 2 项整改事项, 第 1 张测评票.
ITEM_NOUN: dict[str, tuple[str, str]] = {
    "items": ("项", "整改事项"), "ballots": ("张", "测评票"), "attachments": ("个", "附件"),
}
def value_label(value: str) -> str | None:
    """The Chinese name of a stage or role value (``survey`` → 调查摸底), for lists of allowed values."""
    from states.base import ROLE_LABELS, STAGE_LABELS

    for table in (STAGE_LABELS, ROLE_LABELS):
        for k, v in table.items():
            if k.value == value:
                return v
    return None


TRANSPARENT = ("data",)  # the API's wrapper around a record: "data.text" is the record's text


def _focus_point(key: str) -> str:
    from states.survey import FOCUS_POINTS

    return FOCUS_POINTS.get(key, key)


def label_of(loc: Sequence[str | int]) -> str:
    """The Chinese name of the field at ``loc`` (list positions counted from 0 in ``loc``, from 1 in words)."""
    parts = list(loc)
    while len(parts) > 1 and parts[0] in TRANSPARENT:
        parts = parts[1:]
    words: list[str] = []
    i = 0
    parent: str | int | None = None
    while i < len(parts):
        p = parts[i]
        nxt = parts[i + 1] if i + 1 < len(parts) else None
        if isinstance(p, str) and p in ITEM_NOUN and isinstance(nxt, int):
            measure, noun = ITEM_NOUN[p]
            words.append(f"第 {nxt + 1} {measure}{noun}")
            parent, i = p, i + 2
            continue
        if parent == "scores" and isinstance(p, str):
            words[-1:] = [f"第 {p} 项得分"]
        elif parent == "findings" and isinstance(p, str):
            words[-1:] = [f"调查要点“{_focus_point(p)}”"]
        elif isinstance(p, int):
            words.append(f"第 {p + 1} 项")
        else:
            label = IN_CONTEXT.get((str(parent), p)) or FIELD_LABELS.get(p) or p
            words.append(f"“{label}”" if words else label)
        parent = p
        i += 1
    return "的".join(words)

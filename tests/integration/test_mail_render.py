"""Rendering is strict and escapes HTML; a message says what a recipient needs and survives the wire."""

from __future__ import annotations

import datetime as dt
from email import policy
from email.parser import BytesParser
from typing import Any

import pytest
from jinja2 import UndefinedError

from notifications.render import build_message, message_id, notices_context, render


def item(**kw: Any) -> dict[str, Any]:
    base = {"campaign": "测试 2026 年基层组织建设年", "branch_code": "B1", "branch_name": "生物系<教工>党支部",
            "general_branch": "第一党总支", "secretary": "书记甲", "stage": "self_assessment", "stage_label": "支部自评",
            "deadline": "2026-04-10", "deadline_text": "2026年4月10日", "kind": "reminder", "rung": "before-3",
            "days_left": 3, "days_overdue": 0, "missing": ["未填写支部大会日期"], "owners": ["党支部书记"],
            "contact": "总支书记 赵（gb1@test.cn）", "supervision_order": False}
    return {**base, **kw}


def test_a_missing_variable_is_an_error_not_a_hole_in_the_mail() -> None:
    broken = item()
    del broken["contact"]
    with pytest.raises(UndefinedError, match="contact"):
        render("notices", notices_context("书记甲", [broken], ["k"]))
    with pytest.raises(ValueError, match="unknown mail template family"):
        render("nope", {})


def test_html_is_escaped_and_plain_text_is_not() -> None:
    r = render("notices", notices_context("书记甲", [item()], ["k1"]))
    assert "生物系&lt;教工&gt;党支部" in r.html and "生物系<教工>党支部" not in r.html
    assert "生物系<教工>党支部" in r.text
    assert r.subject == "【截止提醒】生物系<教工>党支部“支部自评”环节将于2026年4月10日截止（还剩3天）"


def test_a_digest_counts_what_is_due_overdue_and_ordered() -> None:
    items = [item(), item(branch_code="B2", kind="escalation", days_overdue=3, supervision_order=True,
                          supervision_text="督办令：请限期完成。"),
             item(branch_code="B3", kind="escalation", days_overdue=1, missing=[])]
    r = render("notices", notices_context("组织部 钱", items, ["k1", "k2", "k3"]))
    assert r.subject == "【待办汇总】3项待办：1项即将截止，2项已逾期（含督办令1项）"
    assert "1 项即将截止，2 项已逾期" in r.text
    assert "   督办令：请限期完成。" in r.text and "督办令：督办令" not in r.text
    only_late = render("notices", notices_context("组织部 钱", items[1:], ["k2", "k3"]))
    assert "（2 项已逾期）" in only_late.text and "0 项" not in only_late.text
    assert "尚未完成：本环节材料已齐，请及时推进到下一环节" in r.text
    assert "提醒编号：k1, k2, k3" in r.text


def test_the_message_carries_its_dedup_keys_and_a_stable_message_id() -> None:
    r = render("notices", notices_context("书记甲", [item()], ["c/B1/self_assessment/2026-04-10/before-3"]))
    now = dt.datetime(2026, 4, 7, 1, tzinfo=dt.UTC)
    msg = build_message(sender="党委组织部 <zzb@test.cn>", recipient="sec1@test.cn", recipient_name="书记甲",
                        rendered=r, keys=["c/B1/self_assessment/2026-04-10/before-3"], now=now)
    again = build_message(sender="党委组织部 <zzb@test.cn>", recipient="sec1@test.cn", recipient_name="书记甲",
                          rendered=r, keys=["c/B1/self_assessment/2026-04-10/before-3"], now=now)
    assert msg.message_id == again.message_id == message_id(
        "sec1@test.cn", ["c/B1/self_assessment/2026-04-10/before-3"], "党委组织部 <zzb@test.cn>")
    assert msg.message_id.endswith("@test.cn>") and msg.as_bytes() == again.as_bytes()
    wire = msg.as_bytes()
    assert wire.split(b"\n\n", 1)[0].isascii()
    parsed = BytesParser(policy=policy.default).parsebytes(wire)
    assert parsed["Subject"] == r.subject
    assert parsed["X-Branchflow-Dedup-Key"] == "c/B1/self_assessment/2026-04-10/before-3"
    assert parsed["To"].addresses[0].display_name == "书记甲"
    assert parsed.get_body(("html",)).get_content() == r.html  # type: ignore[union-attr]

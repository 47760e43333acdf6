"""Issue 16 (points 4, 5) below the pages: the list query, the bulk loop, manual reminders and 督办令
through the outbox, objection receipts and the queue — on the real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from notifications import manual
from notifications.models import DeliveryRow, OutboxRow
from service.auth import require_see
from states.base import Stage
from tests.support.dump import dump
from tests.support.world import GB_SEC, MEMBERS, ORG, World, at
from workflow import bulk, listing, objections, service
from workflow.errors import TransitionRefused
from workflow.models import Branch, Committee


def _tx(world: World) -> Any:
    def tx() -> Any:
        from contextlib import contextmanager

        @contextmanager
        def cm() -> Any:
            with world.sessions() as s, s.begin():
                yield s

        return cm()

    return tx


def test_list_query_filters_sorts_and_pages_in_sql(world: World) -> None:
    world.drive("B1", Stage.committee_grading)
    world.drive("B3", Stage.committee_grading, per_item=0.5)
    now = at(4, 25)
    with world.sessions() as s:
        everything = listing.search(s, listing.parse({}), now=now)
        assert everything.total == 4 and [r["code"] for r in everything.rows] == ["B1", "B2", "B3", "B4"]
        stage = listing.search(s, listing.parse({"stage": "committee_grading", "sort": "code", "desc": "1"}), now=now)
        assert [r["code"] for r in stage.rows] == ["B3", "B1"]
        found = listing.search(s, listing.parse({"q": "化学"}), now=now)
        assert [r["code"] for r in found.rows] == ["B2"]
        late = listing.search(s, listing.parse({"overdue": "1"}), now=now)  # survey deadline passed for B2, B4
        assert {r["code"] for r in late.rows} == {"B2", "B4"} and all(r["overdue"] for r in late.rows)
        paged = listing.search(s, listing.parse({"per_page": "10", "page": "9"}), now=now)
        assert paged.page == 1 and paged.pages == 1  # a page past the end shows the last one
        scope = Committee.code.in_(["NOPE"])
        assert listing.search(s, listing.parse({}), now=now, scope=scope).total == 0
        gb = listing.search(s, listing.parse({"general_branch": "GB2"}), now=now)
        assert [r["code"] for r in gb.rows] == ["B3", "B4"]
    q = listing.parse({"q": "生物", "stage": "survey", "sort": "deadline", "page": "2", "bogus": "x"})
    assert q.params() == {"q": "生物", "stage": "survey", "sort": "deadline", "page": "2"}
    assert listing.parse({"stage": "nope", "sort": "nope"}).params() == {}


def test_grade_sort_and_score_sort(world: World) -> None:
    for code, per in (("B1", 0.95), ("B2", 0.5), ("B3", 0.8)):
        world.drive(code, Stage.committee_grading, per_item=per)
        world.do(service.compute_grade, code, MEMBERS[0], now=at(4, 20))
    with world.sessions() as s:
        by_score = listing.search(s, listing.parse({"sort": "score", "desc": "1"}), now=at(4, 21))
        scored = [r["code"] for r in by_score.rows if r["score"] is not None]
        assert scored == ["B1", "B3", "B2"]
        assert by_score.rows[-1]["code"] == "B4" and by_score.rows[-1]["score"] is None  # nulls last


def test_bulk_grade_per_branch_result_and_scope(world: World) -> None:
    world.drive("B1", Stage.committee_grading)
    world.drive("B2", Stage.committee_grading)
    actor_email = MEMBERS[0]
    with world.sessions() as s:
        actor = service.actor_for(s, actor_email)
    results = bulk.run(_tx(world), actor, bulk.ACTIONS["grade"][1], ["B1", "B2", "B3", "NOPE9", "B1"],
                       now=at(4, 20), see=require_see)
    assert [(r.code, r.ok) for r in results] == [("B1", True), ("B2", True), ("B3", False), ("NOPE9", False)]
    assert "总分" in results[0].message and results[0].name == "生物系教工党支部"
    assert "调查摸底" in results[2].message  # B3 is still in the survey: refused, with the stage named
    assert "不存在或无权访问" in results[3].message
    # a general-branch secretary of GB1 does not see B3: answered exactly as an unknown code, nothing changed
    with world.sessions() as s:
        gb = service.actor_for(s, GB_SEC)
    before = dump(world.sessions)
    out = bulk.run(_tx(world), gb, bulk.ACTIONS["advance"][1], ["B3", "NOPE9"], now=at(4, 21), see=require_see)
    assert out[0].message.replace("B3", "X") == out[1].message.replace("NOPE9", "X")
    assert out[0].name == "" and dump(world.sessions) == before


def test_manual_reminder_and_supervision_order_go_through_the_outbox(world: World) -> None:
    now = at(4, 2)  # survey deadline of the haitang preset has passed by now
    dl = world.case("B1").campaign.deadline_for(Stage.survey)
    assert dl is not None and now.date() > dl
    world.do(manual.supervise, "B1", ORG, now=now)
    with world.sessions() as s:
        rows = s.execute(select(OutboxRow.kind, OutboxRow.supervision_order, OutboxRow.context)
                         .where(OutboxRow.branch_code == "B1")).all()
        assert len(rows) == 1 and rows[0].kind == "escalation" and rows[0].supervision_order
        assert rows[0].context["supervision_text"].startswith("督办令")
        to = set(s.scalars(select(DeliveryRow.recipient)))
        assert GB_SEC in to
    with pytest.raises(TransitionRefused, match="每天"):
        world.do(manual.supervise, "B1", ORG, now=at(4, 2, 11))
    # a general-branch secretary may remind, not issue a 督办令; a branch secretary may do neither
    world.do(manual.remind, "B1", GB_SEC, now=at(4, 2, 12))
    from workflow.errors import Forbidden

    with pytest.raises(Forbidden):
        world.do(manual.supervise, "B2", GB_SEC, now=at(4, 2, 12))
    with pytest.raises(Forbidden):
        world.do(manual.remind, "B2", "sec2@test.cn", now=at(4, 2, 12))
    from workflow.views import history

    with world.sessions() as s:
        lines = [e["description"] for e in history(s, "B1")["events"]]
    assert any("催办" in ln for ln in lines) and not any("manual" in ln for ln in lines)
    from workflow.audit import verify

    with world.sessions() as s:
        assert verify(s, branch_code="B1").ok


def _publicity(world: World, code: str = "B1") -> None:
    world.drive(code, Stage.publicity)
    world.do(service.publish, code, ORG, now=at(4, 20, 11))


def test_receipt_code_follows_the_outcome_without_identity(world: World) -> None:
    _publicity(world)
    with world.sessions() as s, s.begin():
        _, code = objections.lodge(s, "B1", service.actor_for(s, "sec3@test.cn"), "该支部自评分偏高。", now=at(4, 22))
    assert len(code) == 12 and not set(code) & set("0O1I")
    with world.sessions() as s:
        stored = dump(world.sessions)["objection_receipts"]
        assert code not in repr(stored) and objections.code_hash(code) in repr(stored)
        out = objections.follow(s, objections.grouped(code).lower(), now=at(4, 23))
        assert out.status == "open" and out.status_label == "待处理" and out.text == "该支部自评分偏高。"
        assert "sec3" not in repr(out)
        q = objections.queue(s, now=at(4, 24))
        assert [(x["code"], x["id"], x["age_days"]) for x in q] == [("B1", 1, 2)] and "sec3" not in repr(q)
        assert objections.open_count(s) == 1
        assert objections.open_count(s, scope=Branch.code.in_(["B2"])) == 0
    world.do(service.resolve_objection, "B1", ORG, 1, upheld=False, reason="经核实，异议不成立。", now=at(4, 24))
    with world.sessions() as s:
        out = objections.follow(s, code, now=at(4, 25))
        assert out.status == "dismissed" and out.reason == "经核实，异议不成立。" and out.resolved_on == "2026-04-24"
        assert objections.open_count(s) == 0


def test_wrong_receipt_codes_are_rate_limited(world: World) -> None:
    now = at(4, 22)
    for _ in range(objections.MAX_FAILURES):
        with world.sessions() as s, s.begin():
            with pytest.raises(objections.UnknownReceipt):
                objections.follow(s, "ABCD-EFGH-JKLM", now=now, client="10.0.0.7")
            objections.note_failure(s, "10.0.0.7", now=now)
    with world.sessions() as s, pytest.raises(objections.ReceiptThrottled):
        objections.follow(s, "ABCD-EFGH-JKLM", now=now, client="10.0.0.7")
    with world.sessions() as s, pytest.raises(objections.UnknownReceipt):  # another address is not held back
        objections.follow(s, "ABCD-EFGH-JKLM", now=now, client="10.0.0.8")
    with world.sessions() as s, pytest.raises(objections.UnknownReceipt):  # the window ends
        objections.follow(s, "ABCD-EFGH-JKLM", now=now + objections.WINDOW, client="10.0.0.7")



def test_the_receipt_mail_renders_in_chinese() -> None:
    from notifications.dispatch import FAMILY
    from notifications.receipts import KIND
    from notifications.render import render

    items = [{"branch_name": "生物系教工党支部", "campaign_name": "2026 年基层组织建设年", "objection_id": 1,
              "code": "ABCD-EFGH-JKLM", "link": "https://bf.example.cn/objections/receipt"}]
    mail = render(FAMILY[KIND], {"recipient_name": "书记B3", "items": items, "keys": ["objection-receipt/x/B1/1"]})
    assert "异议回执" in mail.subject and "ABCD-EFGH-JKLM" in mail.text and "https://bf.example.cn/objections/receipt" in mail.html
    scrubbed = render(FAMILY[KIND], {"recipient_name": "书记B3", "items": [{**items[0], "code": ""}], "keys": ["k"]})
    assert "ABCD" not in scrubbed.text and "已从系统中清除" in scrubbed.text

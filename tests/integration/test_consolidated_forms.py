"""The per-branch forms consolidated across committees (issue 12 item 2), on SQLite and PostgreSQL.

The tree: parent committee P over C1 (the world's: GB1 B1 B2, GB2 B3 B4, campaign haitang-2026, grades
先进 / 一般 / 后进) and C2 (GB3: B5, B6, campaign henan-2026, grades 好 / 较好 / 一般 / 较差), driven through
the real services by each committee's own people. P's organisation department and a P-scoped auditor export
the consolidated forms; every branch row names its committee and carries its own committee's grade label;
the rows of each committee are exactly that committee's own form; totals per committee and overall. A
child's people and an outsider are refused (the outsider exactly as for an unknown committee).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from typing import Any

import openpyxl
import pytest
from sqlalchemy.orm import Session

import reports
from reports.consolidated_forms import CONSOLIDATED_FORMS, render_consolidated_form
from states.base import Role, Stage
from tests.support.world import MEMBERS, ORG, World, at
from workflow import service, tenancy
from workflow.campaigns import create_campaign
from workflow.errors import Forbidden, InvalidInput, NotFound
from workflow.importer import OrgRow, import_rows
from workflow.people import add_person

PARENT_ORG, PARENT_AUDITOR, ORG2, GB3_SEC = "orgp@test.cn", "auditp@test.cn", "org2@test.cn", "gb3@test.cn"
C2_MEMBERS = ["n1@test.cn", "n2@test.cn", "n3@test.cn"]
OUTSIDER = "orgq@test.cn"  # organisation department of Q, a top committee beside P
NOW = at(9, 10)
C1_NAME, C2_NAME = "测试学院党委", "外校党委"


def _row(n: int, code: str, name: str) -> OrgRow:
    return OrgRow(row=n, committee=C2_NAME, committee_code="C2", general_branch="外校党总支", general_branch_code="GB3",
                  code=code, name=name, branch_type="teacher", secretary_name=f"书记{code}",
                  secretary_email=f"{code.lower()}@test.cn", member_count=8, last_reelection=dt.date(2025, 1, 1),
                  last_activity=dt.date(2026, 2, 1), secretary_violation=False)


def drive_c2(w: World, branch: str, to: Stage) -> None:
    """World.drive for C2's branches, by C2's own people (its general-branch secretary, members, department)."""
    order = list(Stage)
    sec = f"{branch.lower()}@test.cn"
    while order.index(w.stage(branch)) < order.index(to):
        stage = w.stage(branch)
        last = w.case(branch).last_at

        def when(month: int, day: int, hour: int = 10, last: dt.datetime | None = last) -> dt.datetime:
            planned = at(month, day, hour)
            return max(planned, last + dt.timedelta(minutes=1)) if last else planned

        if stage is Stage.survey:
            w.do(service.record, branch, GB3_SEC, w.survey_data(), now=when(3, 20))
            w.do(service.advance, branch, GB3_SEC, now=when(3, 20))
        elif stage is Stage.self_assessment:
            w.do(service.record, branch, sec, w.self_data(branch, 0.95), now=when(4, 2))
            w.do(service.advance, branch, sec, now=when(4, 2))
        elif stage is Stage.member_evaluation:
            w.do(service.record, branch, GB3_SEC, w.eval_data(rating=92), now=when(4, 12))
            w.do(service.advance, branch, GB3_SEC, now=when(4, 12))
        elif stage is Stage.committee_grading:
            w.do(service.compute_grade, branch, C2_MEMBERS[0], now=when(4, 20))
            w.do(service.sign, branch, C2_MEMBERS[0], now=when(4, 20))
            w.do(service.sign, branch, C2_MEMBERS[1], now=when(4, 20))
            w.do(service.advance, branch, ORG2, now=when(4, 20))
        elif stage is Stage.publicity:
            if not w.case(branch).state.get("publicity"):
                w.do(service.publish, branch, ORG2, now=when(4, 20, 11))
            w.do(service.advance, branch, ORG2, now=when(5, 10))
        elif stage is Stage.rectification:
            # a problem typed as a formula: it must reach the spreadsheet as inert text
            data: dict[str, Any] = {"items": [{"problem": "=HYPERLINK(\"http://x\")", "measure": "-每月学习",
                                               "due": "2026-07-31", "contact": "@委员"}], "submitted": True,
                                    "self_analysis": "对照标准查找不足。"}
            w.do(service.record, branch, sec, data, now=when(5, 20))
            w.do(service.complete_item, branch, sec, 1, "已完成，附记录。", now=when(7, 1))
            w.do(service.advance, branch, sec, now=when(7, 2))
        else:  # pragma: no cover
            raise AssertionError(stage)


@pytest.fixture
def tree(world: World) -> World:
    return build_tree(world)


def build_tree(world: World) -> World:
    """P over C1 (the world's, haitang-2026) and C2 (henan-2026), Q beside P; B1, B2 and B5 driven."""
    with world.sessions() as s, s.begin():
        tenancy.add_committee(s, "P", "上级党委")
        tenancy.move_committee(s, "C1", "P")
        tenancy.add_committee(s, "C2", C2_NAME, parent="P")
        tenancy.add_committee(s, "Q", "另一上级党委")
        import_rows(s, [_row(2, "B5", "外校第一党支部"), _row(3, "B6", "外校第二党支部")])
        add_person(s, ORG2, "外校组织部", [Role.org_department], "C2")
        add_person(s, GB3_SEC, "外校总支书记", [Role.general_branch_secretary], "GB3")
        for i, m in enumerate(C2_MEMBERS, 1):
            add_person(s, m, f"外校委员{i}", [Role.committee_member], "C2")
        add_person(s, PARENT_ORG, "上级组织部", [Role.org_department], "P")
        add_person(s, PARENT_AUDITOR, "上级审计", [Role.auditor], "P")
        add_person(s, OUTSIDER, "另一组织部", [Role.org_department], "Q")
        create_campaign(s, preset="henan-2012", year=2026, committee="C2", now=at(3, 2))
    world.drive("B1", Stage.rectification)             # graded, no plan yet
    world.drive("B2", Stage.accepted, per_item=0.5)    # graded low, plan done, re-graded at acceptance
    drive_c2(world, "B5", Stage.acceptance)            # graded high on C2's scale, plan done
    return world


def actor(s: Session, email: str) -> service.Actor:
    return service.actor_for(s, email)


def grid(body: bytes) -> list[list[str]]:
    assert body.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def export(s: Session, who: str, name: str, fmt: str = "csv", **kw: Any) -> bytes:
    return render_consolidated_form(s, actor(s, who), name, fmt, now=NOW, **kw).read()


def own_form(s: Session, name: str, campaign: str) -> list[list[str]]:
    """A committee's own per-branch form as its organisation department downloads it (the rows only)."""
    rows = grid(reports.render(s, name, "csv", campaign=campaign, now=NOW).read())
    return rows[4:]


def body_rows(rows: list[list[str]]) -> list[list[str]]:
    """The consolidated form's branch rows (after the header, before the 小计/合计 rows)."""
    out = []
    for r in rows[4:]:
        if r and r[0] in ("小计", "合计"):
            break
        out.append(r)
    return out


def totals(rows: list[list[str]]) -> dict[str, dict[str, str]]:
    """committee (or 各党委合计) → metric → value, from the footer."""
    out: dict[str, dict[str, str]] = {}
    who = ""
    for r in rows[4 + len(body_rows(rows)):]:
        if r[0] in ("小计", "合计"):
            who = r[1]
        out.setdefault(who, {})[r[2]] = r[3]
    return out


@pytest.mark.parametrize("who", [PARENT_ORG, PARENT_AUDITOR])
def test_the_summary_lists_both_committees_branches_with_their_own_grade_labels(tree: World, who: str) -> None:
    with tree.sessions() as s:
        rows = grid(export(s, who, "summary"))
        assert rows[0] == ["上级党委2026年党支部分类定级汇总表（各党委逐支部汇总）"]
        assert rows[3] == ["序号", "所属党委", "所属党总支", "党支部名称", "评分分数", "分类定级结果"]
        body = body_rows(rows)
        assert [r[0] for r in body] == [str(i) for i in range(1, 7)]
        assert [(r[1], r[3]) for r in body] == [
            (C1_NAME, "生物系教工党支部"), (C1_NAME, "化学系教工党支部"), (C1_NAME, "本科生第一党支部"),
            (C1_NAME, "本科生第二党支部"), (C2_NAME, "外校第一党支部"), (C2_NAME, "外校第二党支部")]
        # each committee's rows are exactly its own form's rows (its own scale's labels), 序号 aside
        for name, campaign, part in ((C1_NAME, "haitang-2026", body[:4]), (C2_NAME, "henan-2026", body[4:])):
            assert [[r[0], *r[2:]] for r in part] == [[str(int(o[0]) + (4 if campaign == "henan-2026" else 0)),
                                                       *o[1:]] for o in own_form(s, "summary", campaign)[:len(part)]]
        haitang = {"先进", "一般", "后进", "未定级"}
        henan = {"好", "较好", "一般", "较差", "未定级"}
        labels = {r[3]: r[5] for r in body}
        assert labels["生物系教工党支部"] in haitang - {"未定级"} and labels["化学系教工党支部"] in haitang - {"未定级"}
        assert labels["外校第一党支部"] == "好"  # 95 % of every item and a 92 rating: ≥ 90 on the Henan scale
        assert labels["本科生第一党支部"] == labels["外校第二党支部"] == "未定级"
        t = totals(rows)
        assert list(t) == [C1_NAME, C2_NAME, "各党委合计"]  # P has no campaign and no branch of its own
        assert list(t[C1_NAME]) == ["党支部总数", "先进", "一般", "后进", "未定级"]
        assert list(t[C2_NAME]) == ["党支部总数", "好", "较好", "一般", "较差", "未定级"]
        assert t[C1_NAME]["党支部总数"] == "4" and t[C2_NAME]["党支部总数"] == "2" and t["各党委合计"]["党支部总数"] == "6"
        for name, part in ((C1_NAME, body[:4]), (C2_NAME, body[4:])):
            counted = Counter(r[5] for r in part)
            assert {k: int(v) for k, v in t[name].items() if k != "党支部总数"} == {
                k: counted.get(k, 0) for k in t[name] if k != "党支部总数"}
        overall = Counter(r[5] for r in body)
        assert {k: int(v) for k, v in t["各党委合计"].items() if k != "党支部总数" and int(v)} == dict(overall)
        assert set(t["各党委合计"]) >= (haitang | henan) - {"未定级"} | {"未定级"}
        assert labels["外校第一党支部"] not in haitang  # two scales in one year, each its own words


def test_rectification_acceptance_and_movement_consolidated(tree: World) -> None:
    with tree.sessions() as s:
        rect = grid(export(s, PARENT_ORG, "rectification"))
        assert rect[3][:3] == ["序号", "所属党委", "党支部名称"]
        body = body_rows(rect)
        assert [(r[1], r[2]) for r in body] == [(C1_NAME, "生物系教工党支部"), (C1_NAME, "化学系教工党支部"),
                                               (C2_NAME, "外校第一党支部")]
        assert body[0][3] == "（尚未提交整改方案）"
        t = totals(rect)
        assert t[C1_NAME]["有整改方案的党支部"] == "1" and t[C1_NAME]["尚未提交整改方案的党支部"] == "1"
        assert t[C2_NAME]["整改事项"] == t[C2_NAME]["已完成"] == "1"
        assert t["各党委合计"]["整改事项"] == "2" and t["各党委合计"]["已完成"] == "2"

        acc = grid(export(s, PARENT_ORG, "acceptance"))
        body = body_rows(acc)
        assert len(body) == 6 and {r[1] for r in body} == {C1_NAME, C2_NAME}
        by_branch = {r[3]: r for r in body}
        assert by_branch["化学系教工党支部"][6] == "通过" and by_branch["外校第一党支部"][6] == "未验收"
        t = totals(acc)
        assert "首次定级为后进" in t[C1_NAME] and "首次定级为较差" in t[C2_NAME]  # each scale's own lowest
        assert t["各党委合计"]["党支部总数"] == "6" and t["各党委合计"]["已再次定级"] == "1"
        assert "最低等级支部转化率" in t["各党委合计"]

        mov = grid(export(s, PARENT_AUDITOR, "movement", fmt="csv"))
        body = body_rows(mov)
        assert len(body) == 6 and [r[1] for r in body].count(C2_NAME) == 2
        t = totals(mov)
        assert t[C1_NAME]["党支部总数"] == "4" and t["各党委合计"]["党支部总数"] == "6"
        assert sum(int(v) for k, v in t["各党委合计"].items() if k != "党支部总数") == 6

        tasks = grid(export(s, PARENT_ORG, "tasks"))
        assert {r[1] for r in body_rows(tasks)} == {C1_NAME, C2_NAME}


@pytest.mark.parametrize("name", sorted(CONSOLIDATED_FORMS))
def test_exports_are_inert_csv_with_a_bom_and_xlsx_without_formulas(tree: World, name: str) -> None:
    with tree.sessions() as s:
        raw = export(s, PARENT_ORG, name, "csv")
        assert raw.startswith("\ufeff".encode())
        for row in grid(raw):
            for cell in row:
                assert not cell.startswith(("=", "+", "-", "@")), (name, cell)
        if name == "rectification":
            cells = [c for row in grid(raw) for c in row]
            assert "'=HYPERLINK(\"http://x\")" in cells and "'-每月学习" in cells and "'@委员" in cells
        wb = openpyxl.load_workbook(io.BytesIO(export(s, PARENT_ORG, name, "xlsx")))
        ws = wb.active
        assert ws is not None and ws["A1"].value.endswith(CONSOLIDATED_FORMS[name].label)
        cells = [c for row in ws.iter_rows() for c in row if c.value is not None]
        assert cells and all(c.data_type != "f" for c in cells)
        if name == "rectification":
            assert any(c.value == "=HYPERLINK(\"http://x\")" and c.data_type == "s" for c in cells)


def test_only_the_parents_people_may_export_and_an_outsider_sees_no_such_committee(tree: World) -> None:
    with tree.sessions() as s:
        everything = grid(export(s, "audit@test.cn", "summary", committee="P"))  # a deployment-wide auditor
        assert len(body_rows(everything)) == 6
        # a child's organisation department: its own subtree only, and the parent's consolidation hidden
        own = body_rows(grid(export(s, ORG2, "summary")))
        assert {r[1] for r in own} == {C2_NAME}
        for who in (ORG2, ORG, OUTSIDER):
            with pytest.raises(NotFound) as real:
                export(s, who, "summary", committee="P")
            with pytest.raises(NotFound) as fake:
                export(s, who, "summary", committee="NOPE9")
            assert real.value.message.replace("'P'", "'X'") == fake.value.message.replace("'NOPE9'", "'X'")
            assert "不存在或无权访问" in real.value.message
        with pytest.raises(NotFound):  # a sibling's committee, as unknown
            export(s, ORG2, "acceptance", committee="C1")
        assert body_rows(grid(export(s, OUTSIDER, "summary"))) == []  # Q has no campaign: an empty form
        # deny by default: committee members, general-branch and branch secretaries of a child
        for who in (MEMBERS[0], C2_MEMBERS[0], GB3_SEC, "b5@test.cn", tree.gb_sec("B1")):
            with pytest.raises(Forbidden, match="无权查看下级党委汇总"):
                export(s, who, "summary", committee="P")
        with pytest.raises(InvalidInput, match="没有名为 'nope' 的汇总报表；可用：summary"):
            export(s, PARENT_ORG, "nope")
        with pytest.raises(InvalidInput, match="不支持的格式"):
            export(s, PARENT_ORG, "summary", "pdf")
        assert ORG  # the child's department above is C1's (the world's)


def test_the_rows_are_read_part_by_part(tree: World) -> None:
    """The form pulls one committee's cases at a time: the body is an iterator and nothing is read before it
    is consumed beyond the roll-up's counts (memory flat in the number of branches)."""
    from reports.consolidated_forms import SummaryConsolidated, parts
    from workflow.rollup import rollup

    with tree.sessions() as s:
        data = rollup(s, actor(s, PARENT_ORG), now=NOW, each=True)
        got = parts(s, data)
        first = next(got)
        assert (first.committee_code, first.campaign_code) == ("C1", "haitang-2026")
        assert not isinstance(first.snapshots, list)  # a generator: the cases are read when the form pulls them
        form = SummaryConsolidated(data, NOW)
        rows = form.rows(iter([first, *got]))
        assert next(rows)[1] == C1_NAME and form.subtotals == []  # the totals are counted as the rows go
        rest = list(rows)
        assert len(rest) == 5 and [n for n, _ in form.subtotals] == [C1_NAME, C2_NAME]


def test_a_pre_tenancy_campaign_counts_each_committees_own_branches(tree: World) -> None:
    """A campaign made before committees existed covers every committee: its branches are listed under
    their own committee (the cases narrowed by the branch's committee), no empty 小计 for the others."""
    from sqlalchemy import update

    from workflow.models import CampaignRow

    with tree.sessions() as s, s.begin():
        s.execute(update(CampaignRow).where(CampaignRow.code == "haitang-2026").values(committee_id=None))
    with tree.sessions() as s:
        rows = grid(export(s, PARENT_ORG, "summary"))
        body = body_rows(rows)
        assert [r[1] for r in body] == [C1_NAME] * 4 + [C2_NAME] * 2
        t = totals(rows)
        assert list(t) == [C1_NAME, C2_NAME, "各党委合计"] and t["各党委合计"]["党支部总数"] == "6"

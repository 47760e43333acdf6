"""The forms and the pictures from a known data set, on SQLite and PostgreSQL, checked against values
computed by hand from the haitang-2022 scale (先进 > 85, 一般 65–85, 后进 < 65).

The data set (tests/support/world.py, driven through the real services):

| branch | general branch | self-assessment | stands in | grade | re-grade |
|---|---|---|---|---|---|
| B1 生物系教工党支部 | GB1 | 90 | rectification (no plan yet) | 先进 | — |
| B2 化学系教工党支部 | GB1 | 80 | acceptance (plan done, not inspected) | 一般 | — |
| B3 本科生第一党支部 | GB2 | 50 | accepted (inspected, re-graded 90) | 后进 | 先进 |
| B4 本科生第二党支部 | GB2 | — | member_evaluation | 未定级 | — |
"""

from __future__ import annotations

import csv
import io
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from openpyxl import load_workbook

import reports
from reports import charts
from states.base import Stage
from tests.support.world import World, at
from workflow.errors import InvalidInput, NotFound
from workflow.repository import get_campaign_row

NOW = at(9, 10)


def build_known(world: World) -> World:
    world.drive("B1", Stage.rectification, per_item=0.9)
    world.drive("B2", Stage.acceptance, per_item=0.8)
    world.drive("B3", Stage.accepted, per_item=0.5)
    world.drive("B4", Stage.member_evaluation)
    return world


@pytest.fixture
def known(world: World) -> World:
    return build_known(world)


def render(world: World, name: str, fmt: str, **kw: Any) -> bytes:
    with world.sessions() as s:
        kw.setdefault("now", NOW)
        return reports.render(s, name, fmt, **kw).read()


def xlsx_rows(data: bytes) -> tuple[Any, list[list[Any]]]:
    ws = load_workbook(io.BytesIO(data)).active
    return ws, [list(r) for r in ws.iter_rows(values_only=True)]


def csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf"), "CSV must start with the UTF-8 BOM so that Excel reads Chinese"
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def pad(row: list[Any], n: int) -> list[Any]:
    return row + [None] * (n - len(row))


SUMMARY_ROWS = [
    [1, "GB1", "生物系教工党支部", 90, "先进"],
    [2, "GB1", "化学系教工党支部", 80, "一般"],
    [3, "GB2", "本科生第一党支部", 50, "后进"],
    [4, "GB2", "本科生第二党支部", None, "未定级"],
]
SUMMARY_TOTALS = [
    ["合计", None, "党支部总数", 4, None],
    [None, None, "先进数", 1, None],
    [None, None, "一般数", 1, None],
    [None, None, "后进数", 1, None],
    [None, None, "未定级数", 1, None],
]


def test_summary_xlsx_has_title_header_rows_totals_and_print_setup(known: World) -> None:
    ws, rows = xlsx_rows(render(known, "summary", "xlsx"))
    assert rows[0][0] == "测试学院党委党支部分类定级汇总表"
    assert "A1:E1" in {str(r) for r in ws.merged_cells.ranges}
    assert rows[1][0].startswith("填报单位（盖章）：测试学院党委") and "填报人" in rows[1][0] and "联系电话" in rows[1][0]
    assert "数据截至 2026-09-10 10:00（当前数据）" in rows[2][0]
    assert rows[3] == ["序号", "所属党委（党总支）", "党支部名称", "评分分数", "分类定级结果"]
    assert rows[4:8] == SUMMARY_ROWS
    assert rows[8:] == SUMMARY_TOTALS
    assert ws.freeze_panes == "A5"
    assert ws.print_title_rows == "$4:$4"
    assert ws.page_setup.paperSize == 9  # A4 in OOXML
    assert ws.page_setup.orientation == "portrait"
    assert ws.page_setup.fitToWidth == 1 and ws.sheet_properties.pageSetUpPr.fitToPage
    assert [ws.column_dimensions[c].width for c in "ABCDE"] == [6, 24, 32, 11, 14]
    assert ws["A4"].font.b and ws["A1"].font.sz == 16


def test_summary_per_general_branch_counts_only_its_branches(known: World) -> None:
    _, rows = xlsx_rows(render(known, "summary", "xlsx", general_branch="GB2"))
    assert rows[0][0] == "GB2党支部分类定级汇总表"
    assert rows[1][0].startswith("填报单位（盖章）：GB2")
    assert rows[4:6] == [[1, "GB2", "本科生第一党支部", 50, "后进"], [2, "GB2", "本科生第二党支部", None, "未定级"]]
    assert rows[6:] == [
        ["合计", None, "党支部总数", 2, None],
        [None, None, "先进数", 0, None],
        [None, None, "一般数", 0, None],
        [None, None, "后进数", 1, None],
        [None, None, "未定级数", 1, None],
    ]


def test_summary_csv_opens_with_bom_and_matches_the_xlsx(known: World) -> None:
    rows = csv_rows(render(known, "summary", "csv"))
    assert rows[0] == ["测试学院党委党支部分类定级汇总表"]
    assert rows[3] == ["序号", "所属党委（党总支）", "党支部名称", "评分分数", "分类定级结果"]
    as_text = [["" if v is None else str(v) for v in r] for r in SUMMARY_ROWS + SUMMARY_TOTALS]
    assert rows[4:] == as_text


def test_overview_lists_every_branch_with_stage_deadline_and_overdue(known: World) -> None:
    ws, rows = xlsx_rows(render(known, "overview", "xlsx"))
    assert rows[0][0] == "测试学院党委基层党组织分类定级情况一览表"
    assert rows[3] == ["序号", "所属党总支", "党支部名称", "支部类型", "党员数", "支部书记", "当前环节", "截止日期",
                       "是否逾期", "评分分数", "分类定级结果", "一票否决"]
    assert rows[4:8] == [
        [1, "GB1", "生物系教工党支部", "教工", 10, "书记B1", "整改（晋位升级）", "2026-08-31", "逾期", 90, "先进", None],
        [2, "GB1", "化学系教工党支部", "教工", 9, "书记B2", "检查验收", "2026-09-05", "逾期", 80, "一般", None],
        [3, "GB2", "本科生第一党支部", "本科生", 20, "书记B3", "已验收", None, None, 50, "后进", None],
        [4, "GB2", "本科生第二党支部", "本科生", 12, "书记B4", "党员群众测评", "2026-04-18", "逾期", None, "未定级", None],
    ]
    assert rows[8][:4] == ["合计", None, "党支部总数", 4]
    assert ws.page_setup.orientation == "landscape"


def test_rectification_form_has_one_row_per_item_and_flags_missing_plans(known: World) -> None:
    _, rows = xlsx_rows(render(known, "rectification", "xlsx"))
    assert rows[0][0] == "测试学院党委党支部整改汇总表"
    assert rows[3] == ["序号", "党支部名称", "存在的主要问题", "主要整改措施", "完成整改时间", "党支部定点联系人", "备注"]
    assert rows[4:] == [
        [1, "生物系教工党支部", "（尚未提交整改方案）", None, None, None, None],
        [2, "化学系教工党支部", "组织生活不规范", "每月主题党日", "2026-07-31", "委员1", "已完成"],
        [3, "本科生第一党支部", "组织生活不规范", "每月主题党日", "2026-07-31", "委员1", "已完成；亮黄牌"],
        ["合计", "2 个党支部", "整改事项 2 项", "已完成 2 项，未完成 0 项", None, None, None],
        [None, "1 个党支部尚未提交整改方案", None, None, None, None, None],
    ]


def test_tasks_form_is_the_campaigns_task_list(known: World) -> None:
    _, rows = xlsx_rows(render(known, "tasks", "xlsx"))
    assert rows[0][0] == "基层组织建设年 2026 年任务清单"
    assert rows[3] == ["序号", "任务", "具体要求", "时间期限", "责任人", "备注"]
    assert len(rows) == 4 + 11
    assert rows[5] == [2, "党支部等级评定", "按照分类定级评分参考标准划分", "4 月底", "党总支书记", None]
    lines = csv_rows(render(known, "tasks", "csv"))
    assert lines[:4] == [["基层组织建设年 2026 年任务清单"], ["西安海棠职业学院 2026 年基层组织建设年"], [],
                         ["序号", "任务", "具体要求", "时间期限", "责任人", "备注"]]
    assert len(lines) == 15 and lines[14] == ["11", "党委委员讲党课", "1. 在党校讲党课；2. 在党员培训班上讲党课。", "全年", "党委委员", ""]
    with pytest.raises(InvalidInput, match="不按党总支区分"):
        render(known, "tasks", "xlsx", general_branch="GB1")


def test_acceptance_form_compares_first_grade_and_regrade_with_conversion_rate(known: World) -> None:
    _, rows = xlsx_rows(render(known, "acceptance", "xlsx"))
    assert rows[3] == ["序号", "所属党总支", "党支部名称", "首次定级", "首次得分", "验收结果", "再次定级", "再次得分", "是否晋位"]
    assert rows[4:8] == [
        [1, "GB1", "生物系教工党支部", "先进", 90, "未验收", None, None, None],
        [2, "GB1", "化学系教工党支部", "一般", 80, "未验收", None, None, None],
        [3, "GB2", "本科生第一党支部", "后进", 50, "通过", "先进", 90, "晋位"],
        [4, "GB2", "本科生第二党支部", "未定级", None, "未验收", None, None, None],
    ]
    assert [r[2:4] for r in rows[8:]] == [
        ["党支部总数", 4], ["已再次定级", 1], ["晋位", 1], ["首次定级为后进", 1], ["后进支部晋位", 1],
        ["后进支部转化率", "100.0%"],
    ]


class _Table(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.h1 = ""
        self.rows: list[list[str]] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th", "h1"):
            self._in = tag
            if tag != "h1":
                self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "h1":
            self.h1 += data
        elif self._in:
            self.rows[-1][-1] += data


def test_html_form_is_printable_chinese_with_the_same_rows(known: World) -> None:
    html = render(known, "summary", "html", general_branch="GB1").decode("utf-8")
    assert '<html lang="zh-CN">' in html
    assert re.search(r"@page\s*\{\s*size:\s*A4 portrait", html)
    t = _Table()
    t.feed(html)
    assert t.h1 == "GB1党支部分类定级汇总表"
    assert t.rows[0] == ["序号", "所属党委（党总支）", "党支部名称", "评分分数", "分类定级结果"]
    assert t.rows[1:3] == [["1", "GB1", "生物系教工党支部", "90", "先进"], ["2", "GB1", "化学系教工党支部", "80", "一般"]]
    assert t.rows[3] == ["合计", "", "党支部总数", "2", ""]


def test_html_escapes_what_people_typed(world: World) -> None:
    world.drive("B1", Stage.rectification)
    from workflow import service

    sec = world.secretary("B1")
    world.do(service.record, "B1", sec, {"items": [{"problem": "<script>alert(1)</script>", "measure": "整改 & 落实",
                                                     "due": "2026-07-31", "contact": "委员1"}]}, now=at(5, 20))
    html = render(world, "rectification", "html").decode("utf-8")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "整改 &amp; 落实" in html


def test_bad_requests_raise_clear_chinese_errors(known: World) -> None:
    with pytest.raises(InvalidInput, match="没有名为 'nope' 的报表；可用：summary（党支部分类定级汇总表）"):
        render(known, "nope", "xlsx")
    with pytest.raises(InvalidInput, match="不支持的格式 'pdf'；可用：xlsx、csv、html"):
        render(known, "summary", "pdf")
    with pytest.raises(NotFound, match="党总支 'GB9' 不存在或无权访问"):
        render(known, "summary", "csv", general_branch="GB9")
    with pytest.raises(NotFound, match="找不到活动"):
        render(known, "summary", "csv", campaign="nope-2026")


# --- --at: the form as it stood then ----------------------------------------------------------------

T = at(4, 20, 10, 30)


def _forms_at(world: World, **kw: Any) -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {}
    for name in ("summary", "overview", "rectification", "acceptance"):
        out[name, "csv"] = csv_rows(render(world, name, "csv", **kw))
        out[name, "xlsx"] = xlsx_rows(render(world, name, "xlsx", **kw))[1]
        out[name, "html"] = render(world, name, "html", **kw).decode("utf-8")
    return out


def test_report_at_a_past_time_matches_what_the_form_showed_then(world: World) -> None:
    # Every event up to T happens first; everything after T happens later than T.
    world.drive("B1", Stage.publicity, per_item=0.9)  # graded and signed 04-20 10:00
    world.drive("B2", Stage.publicity, per_item=0.5)
    world.drive("B3", Stage.self_assessment)
    then = _forms_at(world, now=T)
    world.drive("B1", Stage.accepted)  # publicity 04-20 11:00 … acceptance 09-01
    world.drive("B2", Stage.acceptance)
    later = _forms_at(world, now=NOW)
    replayed = _forms_at(world, at=T)

    for key, shown in then.items():
        past = replayed[key]
        if key[1] == "html":
            assert past.replace("按历史记录重放", "当前数据") == shown, key
            continue
        note = 2
        assert "数据截至 2026-04-20 10:30（当前数据）" in shown[note][0], key
        assert "数据截至 2026-04-20 10:30（按历史记录重放）" in past[note][0], key
        assert past[:note] + past[note + 1:] == shown[:note] + shown[note + 1:], key
    # … and the history did move on: today's forms differ from those at T.
    assert later["summary", "csv"][4:] == then["summary", "csv"][4:]  # grades were fixed by 04-20
    assert later["overview", "csv"][4:] != then["overview", "csv"][4:]
    assert later["acceptance", "csv"][4:] != then["acceptance", "csv"][4:]
    assert then["overview", "csv"][4][6] == "公示" and later["overview", "csv"][4][6] == "已验收"


def test_report_at_before_a_case_was_opened_leaves_it_out(world: World) -> None:
    before = csv_rows(render(world, "summary", "csv", at=at(2, 1)))
    assert before[4] == ["合计", "", "党支部总数", "0", ""]
    opened = csv_rows(render(world, "summary", "csv", at=at(3, 1, 9)))
    assert [r[2] for r in opened[4:8]] == ["生物系教工党支部", "化学系教工党支部", "本科生第一党支部", "本科生第二党支部"]


# --- pictures ---------------------------------------------------------------------------------------

def test_chart_numbers_from_the_known_data_set(known: World) -> None:
    with known.sessions() as s:
        row = get_campaign_row(s)
        assert charts.grade_counts(s, row) == [("先进", 1), ("一般", 1), ("后进", 1), ("未定级", 1)]
        # At 09-10: B1 (rectification, due 08-31) and B2 (acceptance, due 09-05) in GB1, B4 (due 04-18) in GB2.
        assert charts.overdue_by_general_branch(s, row, NOW) == [("GB1", 2), ("GB2", 1)]
        assert charts.overdue_by_general_branch(s, row, at(4, 1)) == []
        b = charts.stage_burndown(s, row, NOW)
    assert b.days[0].isoformat() == "2026-03-01" and b.days[-1].isoformat() == "2026-09-10"
    day = {d.isoformat(): i for i, d in enumerate(b.days)}
    assert b.remaining[Stage.survey][day["2026-03-19"]] == 4
    assert b.remaining[Stage.survey][day["2026-03-20"]] == 0  # all four surveyed on 03-20
    assert b.remaining[Stage.member_evaluation][day["2026-04-11"]] == 4
    assert b.remaining[Stage.member_evaluation][day["2026-04-12"]] == 1  # B4 has not been evaluated
    assert b.remaining[Stage.survey][-1] == 0
    assert b.remaining[Stage.member_evaluation][-1] == 1  # B4
    assert b.remaining[Stage.rectification][-1] == 2  # B1 in it, B4 before it
    assert b.remaining[Stage.acceptance][-1] == 3  # only B3 is past acceptance
    assert b.deadlines[Stage.acceptance].isoformat() == "2026-09-05"


def test_dashboard_svgs_show_the_numbers(known: World) -> None:
    with known.sessions() as s:
        svgs = charts.dashboard_svgs(s, None, NOW)
    assert set(svgs) == {"grades", "burndown", "overdue"}
    for svg in svgs.values():
        assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"') and svg.endswith("</svg>")
        assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched from outside
    assert "<title>先进：1 个</title>" in svgs["grades"] and "<title>未定级：1 个</title>" in svgs["grades"]
    assert "<title>GB1：2 个</title>" in svgs["overdue"] and "<title>GB2：1 个</title>" in svgs["overdue"]
    assert "检查验收：尚有 3 个党支部未完成（截止 2026-09-05）" in svgs["burndown"]
    assert 'aria-label="逾期党支部（按党总支）：GB1 2 个；GB2 1 个"' in svgs["overdue"]


def test_rendered_gives_what_a_download_needs(known: World) -> None:
    with known.sessions() as s:
        r = reports.render(s, "summary", "xlsx", general_branch="GB1", now=NOW)
        assert r.content_disposition() == (
            'attachment; filename="summary-GB1-20260910-1000.xlsx"; '
            "filename*=UTF-8''%E5%85%9A%E6%94%AF%E9%83%A8%E5%88%86%E7%B1%BB%E5%AE%9A%E7%BA%A7%E6%B1%87%E6%80%BB%E8%A1%A8"
            "-GB1-20260910-1000.xlsx"
        )
        filename, media_type, body = r
        assert filename == "党支部分类定级汇总表-GB1-20260910-1000.xlsx"
        assert media_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        assert b"".join(body).startswith(b"PK")  # a zip: the XLSX container
    assert reports.form_names()["rectification"] == "党支部整改汇总表"


def test_snapshots_stream_the_same_in_any_batch_size(known: World) -> None:
    """Small batches interleave the event queries with the open (server-side on PostgreSQL) case cursor."""
    from reports.snapshots import snapshots

    with known.sessions() as s:
        camp = get_campaign_row(s)
        for when in (None, T, NOW):
            one = [(x.code, x.state) for x in snapshots(s, camp, at=when, batch=1)]
            many = [(x.code, x.state) for x in snapshots(s, camp, at=when)]
            assert [c for c, _ in one] == ["B1", "B2", "B3", "B4"]
            assert one == many
        now_states = [x.state for x in snapshots(s, camp)]
        assert [x.state for x in snapshots(s, camp, at=NOW, batch=3)] == now_states  # the replay is the projection

"""Forms and charts as pure code: states built by the real fold, rows and totals computed by hand."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

from reports.charts import MAX_BARS, Burndown, bar_svg, burndown_svg
from reports.forms import Acceptance, FormContext, Rectification, Summary
from reports.snapshots import Scope, Snapshot
from reports.writers import text, write_csv
from states.base import Stage
from workflow.campaign import load_preset
from workflow.case import new_state

CAMPAIGN = load_preset("cumtb-2012")  # 好(A) / 较好(B) / 一般(C) / 较差(D)
SCOPE = Scope(general_branch_code="GB", general_branch_name="机关党总支", committee_name="测试党委")
NOW = dt.datetime(2012, 9, 10, 2, 0, tzinfo=dt.UTC)


def ctx(replayed: bool = False) -> FormContext:
    return FormContext(campaign=CAMPAIGN, scope=SCOPE, as_of=NOW, replayed=replayed)


def snap(code: str, *, final: str | None = None, total: float | None = None, regrade: str | None = None,
         items: list[dict[str, object]] | None = None, stage: Stage = Stage.rectification) -> Snapshot:
    s = new_state(CAMPAIGN.code, code)
    s["stage"] = stage.value
    if total is not None:
        s["grade"] = {"total": total, "grade": final, "veto": []}
    s["final_grade"] = final
    if regrade:
        s["regrade"] = regrade
        s["inspection"] = {"passed": True, "regrade": regrade, "regrade_score": 88.0}
    if items is not None:
        s["records"]["rectification"] = {"items": items, "submitted": True}
    return Snapshot(committee="测试党委", general_branch_code="GB", general_branch="机关党总支", code=code,
                    name=f"{code}党支部", branch_type="admin", member_count=8, secretary="王", state=s)


def codes() -> list[str]:
    return [b.code for b in CAMPAIGN.grading.scale.bands]


def test_summary_counts_each_grade_of_a_four_grade_scale() -> None:
    a, _b, _c, d = codes()
    f = Summary(ctx())
    rows = list(f.rows([snap("S1", final=a, total=95), snap("S2", final=d, total=40), snap("S3", final=d, total=55.5),
                        snap("S4")]))
    assert rows == [
        [1, "机关党总支", "S1党支部", 95.0, "好"],
        [2, "机关党总支", "S2党支部", 40.0, "较差"],
        [3, "机关党总支", "S3党支部", 55.5, "较差"],
        [4, "机关党总支", "S4党支部", None, "未定级"],
    ]
    assert [r[2:4] for r in f.footer()] == [["党支部总数", 4], ["好数", 1], ["较好数", 0], ["一般数", 0],
                                           ["较差数", 2], ["未定级数", 1]]
    assert f.title == "机关党总支党支部分类定级汇总表"


def test_a_computed_but_unsigned_grade_is_not_on_the_summary_yet() -> None:
    f = Summary(ctx())
    s = snap("S1", total=91)  # graded by the computation, not yet signed by the committee
    assert list(f.rows([s])) == [[1, "机关党总支", "S1党支部", None, "未定级"]]


def test_rectification_remarks_say_done_open_or_overdue() -> None:
    items = [
        {"problem": "问题一", "measure": "措施一", "due": "2012-09-30", "contact": "张", "done": True, "evidence": "记录"},
        {"problem": "问题二", "measure": "措施二", "due": "2012-09-30", "contact": "张", "done": False, "evidence": None},
        {"problem": "问题三", "measure": "措施三", "due": "2012-09-01", "contact": "李", "done": False, "evidence": None},
    ]
    d = codes()[-1]
    f = Rectification(ctx())
    rows = list(f.rows([snap("R1", final=d, total=50, items=items)]))
    assert [r[6] for r in rows] == ["已完成；亮黄牌", "未完成；亮黄牌", "逾期未完成；亮黄牌"]
    assert f.footer()[0][:4] == ["合计", "1 个党支部", "整改事项 3 项", "已完成 1 项，未完成 2 项"]


def test_conversion_rate_counts_only_branches_first_graded_lowest() -> None:
    a, b, c, d = codes()
    f = Acceptance(ctx())
    list(f.rows([snap("X1", final=d, total=50, regrade=c), snap("X2", final=d, total=50, regrade=d),
                 snap("X3", final=d, total=50), snap("X4", final=b, total=85, regrade=a),
                 snap("X5", final=a, total=95, regrade=b)]))
    totals = {r[2]: r[3] for r in f.footer()}
    assert totals == {"党支部总数": 5, "已再次定级": 4, "晋位": 2, "首次定级为较差": 3, "较差支部晋位": 1,
                      "较差支部转化率": "33.3%"}


def test_csv_starts_with_bom_and_formats_numbers_plainly() -> None:
    a = codes()[0]
    data = b"".join(write_csv(Summary(ctx(replayed=True)), Summary(ctx()).rows([snap("S1", final=a, total=90.0)])))
    assert data.startswith("\ufeff".encode())
    lines = data.decode("utf-8-sig").splitlines()
    assert lines[2].endswith("数据截至 2012-09-10 10:00（按历史记录重放）")
    assert lines[4] == "1,机关党总支,S1党支部,90,好"
    assert (text(None), text(90.0), text(85.5), text(3)) == ("", "90", "85.5", "3")


def test_bar_chart_escapes_labels_folds_long_lists_and_is_valid_svg() -> None:
    items = [(f"<党总支{i}>", 30 - i) for i in range(20)]
    svg = bar_svg("逾期 & 督办", items)
    root = ET.fromstring(svg)  # well-formed XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "<党总支" not in svg and "&lt;党总支0&gt;" in svg
    bars = root.findall("{http://www.w3.org/2000/svg}rect")[1:]  # the first is the background
    assert len(bars) == MAX_BARS
    other = sum(30 - i for i in range(MAX_BARS - 1, 20))
    assert f"<title>其他：{other} 个</title>" in svg


def test_empty_bar_chart_says_none() -> None:
    svg = bar_svg("逾期党支部（按党总支）", [])
    assert ">无</text>" in svg and 'aria-label="逾期党支部（按党总支）：无数据"' in svg


def test_burndown_draws_a_line_and_a_deadline_per_stage() -> None:
    days = [dt.date(2012, 3, 1) + dt.timedelta(days=i) for i in range(3)]
    b = Burndown(days=days, remaining={Stage.survey: [5, 2, 0], Stage.self_assessment: [5, 5, 4]},
                 deadlines={Stage.survey: dt.date(2012, 3, 2), Stage.self_assessment: dt.date(2012, 3, 20)})
    svg = burndown_svg(b)
    root = ET.fromstring(svg)
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 2
    assert "调查摸底：尚有 0 个党支部未完成（截止 2012-03-02）" in svg
    assert "支部自评：尚有 4 个党支部未完成（截止 2012-03-20）" in svg

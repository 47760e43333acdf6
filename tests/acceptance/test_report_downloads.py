"""Downloading the forms and charts over HTTP: ``GET /api/reports``, ``/api/reports/{name}``,
``/api/charts/{name}.svg``, the 报表 page and the charts on the dashboard; who may download what."""

from __future__ import annotations

import io
import re
import urllib.parse

import openpyxl
import pytest

from states.base import Stage
from tests.acceptance.conftest import Site
from tests.support.world import at

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def graded(site: Site) -> Site:
    site.world.drive("B1", Stage.rectification)
    site.clock.now = at(6, 1)
    return site


def test_the_list_of_forms_names_each_with_its_label_and_formats(site: Site) -> None:
    forms = {f["name"]: f for f in site.call("org", "GET", "/api/reports").json()}
    assert forms["summary"]["label"] == "党支部分类定级汇总表"
    assert forms["summary"]["formats"] == ["xlsx", "csv", "html"]
    assert site.call("sec1", "GET", "/api/reports").status_code == 403


def test_xlsx_csv_and_html_downloads(graded: Site) -> None:
    r = graded.call("org", "GET", "/api/reports/summary", params={"format": "xlsx"})
    assert r.status_code == 200 and r.headers["content-type"] == XLSX
    cd = r.headers["content-disposition"]
    assert cd.startswith('attachment; filename="summary-') and "filename*=UTF-8''" in cd
    assert urllib.parse.unquote(cd.split("UTF-8''")[1]).startswith("党支部分类定级汇总表-")
    ws = openpyxl.load_workbook(io.BytesIO(r.content), read_only=True).active
    rows = [[c for c in row if c is not None] for row in ws.iter_rows(values_only=True)]
    assert rows[0][0].endswith("党支部分类定级汇总表")
    assert any("党支部名称" in row and "分类定级结果" in row for row in rows[:6])
    assert any("生物系教工党支部" in row for row in rows)

    r = graded.call("auditor", "GET", "/api/reports/overview", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf") and "基层党组织分类定级情况一览表" in r.content.decode("utf-8-sig")

    r = graded.call("m1", "GET", "/api/reports/rectification", params={"format": "html", "at": "2026-05-01"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "党支部整改汇总表" in r.text


def test_bad_name_format_time_or_general_branch_are_json_errors(site: Site) -> None:
    for params, path, status in [({}, "/api/reports/nope", 404), ({"format": "pdf"}, "/api/reports/summary", 422),
                                 ({"at": "yesterday"}, "/api/reports/summary", 422),
                                 ({"general_branch": "GB9"}, "/api/reports/summary", 404),
                                 ({}, "/api/charts/nope.svg", 404)]:
        r = site.call("org", "GET", path, params=params)
        assert r.status_code == status, (path, params, r.text)
        assert r.headers["content-type"] == "application/json" and r.json()["error"] and r.json()["message"]
    assert site.call(None, "GET", "/api/reports/summary").status_code == 401


def test_who_may_download(site: Site) -> None:
    r = site.call("sec1", "GET", "/api/reports/summary", params={"format": "csv"})
    assert r.status_code == 403 and r.json()["error"] == "Forbidden"
    own = site.call("gb1", "GET", "/api/reports/summary", params={"format": "csv"})
    assert own.status_code == 200 and "-GB1-" in own.headers["content-disposition"]
    text = own.content.decode("utf-8-sig")
    assert "生物系教工党支部" in text and "本科生第一党支部" not in text
    assert site.call("gb1", "GET", "/api/reports/summary", params={"general_branch": "GB1"}).status_code == 200
    assert site.call("gb1", "GET", "/api/reports/summary", params={"general_branch": "GB2"}).status_code == 404  # no oracle: as an unknown one
    assert site.call("gb1", "GET", "/api/charts/grades.svg").status_code == 403
    assert site.call("sec1", "GET", "/api/charts/grades.svg").status_code == 403
    every = site.call("auditor", "GET", "/api/reports/summary", params={"format": "csv"}).content.decode("utf-8-sig")
    assert "生物系教工党支部" in every and "本科生第一党支部" in every
    assert site.call("m2", "GET", "/api/reports/summary", params={"general_branch": "GB2"}).status_code == 200


def test_charts_are_svg(graded: Site) -> None:
    for name in ("grades", "burndown", "overdue"):
        r = graded.call("auditor", "GET", f"/api/charts/{name}.svg")
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
        assert r.text.lstrip().startswith("<svg") or "<svg" in r.text[:200]


def test_the_reports_page_lists_a_button_per_form_and_format_and_its_links_download(graded: Site) -> None:
    c = graded.page_client("org")
    page = c.get("/reports")
    assert page.status_code == 200 and 'href="/reports"' in page.text  # the nav link
    links = re.findall(r'<a class="button" href="([^"]+)"', page.text)
    assert len(links) == 6 * 3 and "/reports/summary.xlsx" in links and "/reports/movement.xlsx" in links
    r = c.get("/reports/summary.xlsx")
    assert r.status_code == 200 and r.headers["content-type"] == XLSX and "filename*=UTF-8''" in r.headers["content-disposition"]
    assert openpyxl.load_workbook(io.BytesIO(r.content)).active["A1"].value.endswith("党支部分类定级汇总表")

    gb = graded.page_client("gb1")
    page = gb.get("/reports", params={"at": "2026-05-01"})
    href = re.search(r'href="(/reports/summary\.csv[^"]*)"', page.text).group(1).replace("&amp;", "&")
    assert "general_branch=GB1" in href and "at=2026-05-01" in href
    r = gb.get(href)
    assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf") and "-GB1-" in r.headers["content-disposition"]
    assert gb.get("/reports/summary.csv", params={"general_branch": "GB2"}).status_code == 404

    sec = graded.page_client("sec1")
    assert 'href="/reports"' not in sec.get("/").text
    assert sec.get("/reports").status_code == 403 and sec.get("/reports/summary.csv").status_code == 403
    assert graded.page_client(None).get("/reports/summary.csv", follow_redirects=False).status_code == 303


def test_the_dashboard_shows_the_charts_inline(graded: Site) -> None:
    html = graded.page_client("org").get("/dashboard").text
    # no inline script and nothing from elsewhere (the one script is the site's own static focus helper)
    scripts = re.findall(r"<script[^>]*>", html)
    assert "<h2>图表</h2>" in html and html.count("<svg") >= 3 and "https://" not in html
    assert scripts == ['<script src="/static/focus.js" defer>']
    assert "各环节党支部数" in html  # what was there stays
    assert "<svg" not in graded.page_client("gb1").get("/dashboard").text  # the charts count every branch

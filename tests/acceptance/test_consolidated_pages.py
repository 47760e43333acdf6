"""The consolidated forms on the /rollup page and over the API (issue 12 item 2): the parent's people see a
download link per form and format, for the committee and year shown, and every link downloads; a child's
department and an outsider get the same 404 as for an unknown committee, members and secretaries a 403 —
in Chinese, with the way back; SQLite and PostgreSQL (the tree of tests/integration/test_consolidated_forms.py)."""

from __future__ import annotations

import html
import io
import re
import urllib.parse

import openpyxl
import pytest

from reports.consolidated_forms import CONSOLIDATED_FORMS
from tests.acceptance.conftest import Site
from tests.integration.test_consolidated_forms import (
    C1_NAME,
    C2_NAME,
    ORG2,
    OUTSIDER,
    PARENT_AUDITOR,
    PARENT_ORG,
    build_tree,
)
from tests.support.world import at

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def parent(site: Site) -> Site:
    from tests.acceptance.conftest import _password_hash
    from workflow.models import Person

    build_tree(site.world)
    with site.world.sessions() as s, s.begin():  # the tree's people can log in like the world's
        for p in s.query(Person).filter(Person.password_hash.is_(None)).all():
            p.password_hash = _password_hash()
    site.clock.now = at(9, 10)
    return site


def test_the_rollup_page_links_every_consolidated_form_and_each_link_downloads(parent: Site) -> None:
    c = parent.page_client(PARENT_ORG)
    page = c.get("/rollup")
    assert page.status_code == 200 and "汇总报表下载" in page.text
    links = [html.unescape(h) for h in re.findall(r'<a class="button" href="([^"]+)"', page.text)]
    assert len(links) == len(CONSOLIDATED_FORMS) * 2
    assert "/rollup/forms/summary.xlsx?committee=P&year=2026" in links
    assert "/rollup/forms/movement.csv?committee=P&year=2026" in links
    assert 'href="/rollup/summary.csv?committee=P&amp;year=2026"' in page.text  # the one-row-per-committee form
    assert '<input type="hidden" name="committee" value="P">' in page.text  # another year keeps the committee
    for href in links:
        r = c.get(href)
        assert r.status_code == 200, (href, r.text[:300])
        name = urllib.parse.unquote(r.headers["content-disposition"].split("UTF-8''")[1])
        assert name.endswith(href.split("?")[0].rpartition(".")[2]) and "-P-2026-" in name
        if href.split("?")[0].endswith(".csv"):
            assert r.headers["content-type"].startswith("text/csv") and r.content.startswith(b"\xef\xbb\xbf")
            text = r.content.decode("utf-8-sig")
            assert C1_NAME in text and C2_NAME in text
        else:
            assert r.headers["content-type"] == XLSX
            ws = openpyxl.load_workbook(io.BytesIO(r.content)).active
            assert ws is not None and ws["B4"].value == "所属党委"
    summary = c.get("/rollup/forms/summary.csv", params={"committee": "P", "year": "2026"}).content.decode("utf-8-sig")
    assert "外校第一党支部" in summary and ",好\r\n" in summary  # C2's own scale
    assert "生物系教工党支部" in summary


def strong(page: str) -> str:
    found = re.search(r"<strong>([^<]+)</strong>", page)
    assert found, page
    return html.unescape(found.group(1))


@pytest.mark.parametrize("who", [ORG2, "org@test.cn", OUTSIDER])
def test_a_childs_department_and_an_outsider_get_what_an_unknown_committee_gets(parent: Site, who: str) -> None:
    c = parent.page_client(who)
    real = c.get("/rollup/forms/summary.xlsx", params={"committee": "P"})
    fake = c.get("/rollup/forms/summary.xlsx", params={"committee": "NOPE9"})
    assert real.status_code == fake.status_code == 404
    assert real.headers["content-type"].startswith("text/html") and "content-disposition" not in real.headers
    assert strong(real.text) == "党委 'P' 不存在或无权访问"
    assert strong(real.text).replace("'P'", "X") == strong(fake.text).replace("'NOPE9'", "X")
    assert 'href="/rollup"' in real.text and 'href="/"' in real.text  # the way back
    r = parent.call(who, "GET", "/api/rollup/forms/summary", params={"committee": "P", "format": "csv"})
    f = parent.call(who, "GET", "/api/rollup/forms/summary", params={"committee": "NOPE9", "format": "csv"})
    assert r.status_code == f.status_code == 404
    assert r.json()["message"].replace("'P'", "X") == f.json()["message"].replace("'NOPE9'", "X")


@pytest.mark.parametrize("who", ["m1@test.cn", "n1@test.cn", "gb3@test.cn", "sec1@test.cn"])
def test_members_and_secretaries_are_refused(parent: Site, who: str) -> None:
    page = parent.page_client(who).get("/rollup/forms/acceptance.csv", params={"committee": "P"})
    assert page.status_code == 403 and "无权查看下级党委汇总" in page.text and 'href="/"' in page.text
    r = parent.call(who, "GET", "/api/rollup/forms/acceptance", params={"committee": "P"})
    assert r.status_code == 403 and r.json()["error"] == "Forbidden"


def test_the_api_and_bad_requests(parent: Site) -> None:
    r = parent.call(PARENT_AUDITOR, "GET", "/api/rollup/forms/rectification", params={"format": "csv"})
    assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf")
    assert "党支部整改汇总表（各党委逐支部汇总）" in r.content.decode("utf-8-sig")
    assert parent.call(PARENT_ORG, "GET", "/api/rollup/forms/rectification").content[:2] == b"PK"
    printable = parent.page_client(PARENT_ORG).get("/rollup/forms/movement.html", params={"committee": "P"})
    assert printable.status_code == 200 and printable.headers["content-type"].startswith("text/html")
    assert "<h1>上级党委2026年党支部晋位升级对比表（各党委逐支部汇总）</h1>" in printable.text
    bad = parent.call(PARENT_ORG, "GET", "/api/rollup/forms/nope")
    assert bad.status_code == 422 and "没有名为 'nope' 的汇总报表" in bad.json()["message"]
    assert parent.call(None, "GET", "/api/rollup/forms/summary").status_code == 401
    page = parent.page_client(PARENT_ORG).get("/rollup/forms/summary.pdf")
    assert page.status_code == 422 and "不支持的格式" in page.text and 'href="/rollup"' in page.text
    assert parent.page_client(None).get("/rollup/forms/summary.csv", follow_redirects=False).status_code == 303

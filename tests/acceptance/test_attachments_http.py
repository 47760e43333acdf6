"""Attachments over HTTP (issue 16): the branch page's forms and the API, on a SQLite file and a real folder
store. A renamed program and a web page named .jpg are refused in Chinese with nothing stored or recorded;
a file too large is refused (413); a PDF and a PNG are accepted, their hashes are in the event and the
download returns the same bytes with the right headers; a tampered file is refused on download; a person
outside the branch's scope gets the same 404 as for a hash nobody filed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from service.files import PDF_CSP
from service.security import FILE_CSP
from states.base import Stage
from tests.acceptance.conftest import Clock, Site
from tests.support import files
from tests.support.world import World, at
from workflow import limits, service
from workflow.blobs import FolderStore, sha256_hex
from workflow.models import EventRow

PLAN = {"items": [{"problem": "组织生活不规范", "measure": "每月主题党日", "due": "2026-07-31", "contact": "委员1"},
                  {"problem": "党员教育不足", "measure": "每季度专题学习", "due": "2026-08-31", "contact": "委员2"}],
        "submitted": True, "self_analysis": "对照标准查找不足。"}


@pytest.fixture
def fsite(sqlite_world: World, clock: Clock, tmp_path: Path) -> Iterator[Site]:
    w = sqlite_world
    w.drive("B1", Stage.rectification)
    w.do(service.record, "B1", w.secretary("B1"), PLAN, now=at(5, 20))
    clock.now = at(6, 1)
    site = Site(w, clock)
    site.app.state.blob_store = FolderStore(tmp_path / "files")
    with site.client:
        yield site


def store(site: Site) -> FolderStore:
    st = site.app.state.blob_store
    assert isinstance(st, FolderStore)
    return st


def csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m
    return m.group(1)


def complete_on_page(site: Site, who: str, item: int, uploads: list[tuple[str, bytes, str]]) -> Any:
    c = site.page_client(who)
    page = c.get("/branches/B1").text
    return c, c.post("/branches/B1", data={"csrf": csrf(page), "action": "complete", "item": str(item),
                                           "evidence": "已完成，附会议记录和照片。"},
                     files=[("files", u) for u in uploads], follow_redirects=True)


def events(site: Site, kind: str) -> list[dict[str, Any]]:
    with site.world.sessions() as s:
        return [orjson.loads(b) for b in s.scalars(select(EventRow.body).where(EventRow.kind == kind))]


def test_pdf_and_png_as_evidence_on_the_page_then_previews_and_downloads(fsite: Site) -> None:
    pdf, png = files.pdf("minutes"), files.png()
    c, r = complete_on_page(fsite, "sec1", 1, [("会议记录.pdf", pdf, "application/pdf"), ("现场照片.png", png, "image/png")])
    assert r.status_code == 200 and "第 1 项已登记完成" in r.text
    (ev,) = events(fsite, "item_completed")
    assert [(a["sha256"], a["name"], a["media_type"]) for a in ev["payload"]["attachments"]] == [
        (sha256_hex(pdf), "会议记录.pdf", "application/pdf"), (sha256_hex(png), "现场照片.png", "image/png")]
    assert f'<img class="thumb" src="/attachments/{sha256_hex(png)}" alt="现场照片.png"' in r.text
    assert f'href="/attachments/{sha256_hex(pdf)}" target="_blank"' in r.text
    img = c.get(f"/attachments/{sha256_hex(png)}")
    assert img.status_code == 200 and img.content == png
    assert img.headers["content-type"] == "image/png" and img.headers["x-content-type-options"] == "nosniff"
    assert img.headers["content-disposition"].startswith("inline;")
    assert img.headers["content-security-policy"] == FILE_CSP and img.headers["x-frame-options"] == "DENY"
    doc = fsite.call("gb1", "GET", f"/api/attachments/{sha256_hex(pdf)}")  # the general branch reads it too
    assert doc.content == pdf and doc.headers["content-type"] == "application/pdf"
    assert doc.headers["content-disposition"] == (
        "inline; filename=\"attachment.pdf\"; filename*=UTF-8''%E4%BC%9A%E8%AE%AE%E8%AE%B0%E5%BD%95.pdf")
    assert doc.headers["content-security-policy"] == PDF_CSP and "frame-ancestors 'none'" in PDF_CSP
    # the inspector (organisation department) sees the files on the branch page, without the form
    page = fsite.page_client("org").get("/branches/B1").text
    assert "整改事项 1 的佐证" in page and f'src="/attachments/{sha256_hex(png)}"' in page
    record = fsite.page_client("org").get("/branches/B1/record").text  # the printable record view
    assert f'src="/attachments/{sha256_hex(png)}"' in record and "会议记录.pdf" in record


def test_a_renamed_program_is_refused_on_the_page_and_nothing_is_kept(fsite: Site) -> None:
    before = fsite.version("B1")
    _, r = complete_on_page(fsite, "sec1", 1, [("evidence.pdf", files.exe(), "application/pdf")])
    assert r.status_code == 422
    assert "附件“evidence.pdf”是Windows 可执行程序，不能上传" in r.text
    assert fsite.version("B1") == before and list(store(fsite).shas()) == []
    assert not fsite.world.case("B1").state["records"]["rectification"]["items"][0]["done"]


def test_a_web_page_named_jpg_and_a_name_that_lies_are_refused_by_the_api(fsite: Site) -> None:
    before = fsite.version("B1")
    for name, data, said in (("photo.jpg", files.HTML_WITH_SCRIPT, "网页或含脚本"),
                             ("扫描件.pdf", files.png(), "文件名与内容不符")):
        r = fsite.call("sec1", "POST", "/api/branches/B1/attachments",
                       data={"target": "item", "item": "1", "evidence": "已完成。"}, files=[("files", (name, data))])
        assert r.status_code == 422, r.text
        assert said in r.json()["message"]
    assert fsite.version("B1") == before and list(store(fsite).shas()) == []


def test_too_large_files_are_refused_and_the_upload_routes_take_more_than_other_posts(fsite: Site) -> None:
    from service.limits_middleware import MAX_ATTACHMENTS, MAX_UPLOAD

    before = fsite.version("B1")
    big = b"%PDF-1.4\n" + b"0" * limits.ATTACHMENT_MAX_BYTES  # one byte over the per-file limit
    r = fsite.call("sec1", "POST", "/api/branches/B1/attachments",
                   data={"target": "item", "item": "1", "evidence": "已完成。"}, files=[("files", ("big.pdf", big))])
    assert r.status_code == 413 and "每个文件最多 20.0 MB" in r.json()["message"]
    huge = b"%PDF-1.4\n" + b"0" * (MAX_ATTACHMENTS - 9)  # over what any upload form may carry: refused unread
    r = fsite.call("sec1", "POST", "/api/branches/B1/attachments", data={"target": "item"},
                   files=[("files", ("huge.pdf", huge))])
    assert r.status_code == 413 and "上传的附件过大" in r.json()["message"]
    assert fsite.version("B1") == before and list(store(fsite).shas()) == []
    # two files of 17 MiB: more than the 32 MiB of other multipart posts, within one form's 40 MiB
    two = [("files", (f"{i}.pdf", b"%PDF-1.4\n" + bytes([i]) * (17 * 1024 * 1024))) for i in (1, 2)]
    refused = fsite.call("sec1", "POST", "/api/branches/B1/records", files=two)
    assert refused.status_code == 413 and MAX_UPLOAD < 34 * 1024 * 1024 < MAX_ATTACHMENTS
    ok = fsite.call("sec1", "POST", "/api/branches/B1/attachments",
                    data={"target": "item", "item": "2", "evidence": "已完成，附记录。"}, files=two)
    assert ok.status_code == 200, ok.text
    assert len(list(store(fsite).shas())) == 2


def test_a_tampered_file_is_refused_on_download(fsite: Site) -> None:
    png = files.png()
    r = fsite.call("sec1", "POST", "/api/branches/B1/attachments", data={"target": "self_analysis"},
                   files=[("files", ("剖析.png", png))])
    assert r.status_code == 200, r.text
    assert fsite.world.case("B1").state["records"]["rectification"]["attachments"][0]["sha256"] == sha256_hex(png)
    sha = sha256_hex(png)
    path = store(fsite).root / sha[:2] / sha[2:4] / sha
    path.write_bytes(files.png(rgb=(1, 2, 3)))
    api = fsite.call("sec1", "GET", f"/api/attachments/{sha}")
    assert api.status_code == 500 and "文件已损坏或被篡改" in api.json()["message"]
    page = fsite.page_client("sec1").get(f"/attachments/{sha}")
    assert page.status_code == 500 and "文件已损坏或被篡改" in page.text and page.content != path.read_bytes()


def test_outside_the_scope_answers_as_a_hash_nobody_filed(fsite: Site) -> None:
    png = files.png()
    assert fsite.call("sec1", "POST", "/api/branches/B1/attachments", data={"target": "self_analysis"},
                      files=[("files", ("a.png", png))]).status_code == 200
    sha, unknown = sha256_hex(png), sha256_hex(b"nobody filed this")
    for who in ("sec2", "gb2"):  # B2's secretary; the general branch of B3 and B4
        real = fsite.call(who, "GET", f"/api/attachments/{sha}")
        fake = fsite.call(who, "GET", f"/api/attachments/{unknown}")
        assert real.status_code == fake.status_code == 404
        assert real.json()["message"].replace(sha, "X") == fake.json()["message"].replace(unknown, "X")
        p_real = fsite.page_client(who).get(f"/attachments/{sha}")
        p_fake = fsite.page_client(who).get(f"/attachments/{unknown}")
        assert p_real.status_code == p_fake.status_code == 404 and png not in p_real.content
    for who in ("sec1", "gb1", "org", "auditor"):
        assert fsite.call(who, "GET", f"/api/attachments/{sha}").content == png, who
    # uploading to a branch outside one's scope: as to a branch that does not exist, nothing stored
    n = len(list(store(fsite).shas()))
    real = fsite.call("sec2", "POST", "/api/branches/B1/attachments", data={"target": "self_analysis"},
                      files=[("files", ("b.pdf", files.pdf("x")))])
    fake = fsite.call("sec2", "POST", "/api/branches/NOPE9/attachments", data={"target": "self_analysis"},
                      files=[("files", ("b.pdf", files.pdf("x")))])
    assert real.status_code == fake.status_code == 404
    assert real.json()["message"].replace("'B1'", "X") == fake.json()["message"].replace("'NOPE9'", "X")
    assert len(list(store(fsite).shas())) == n

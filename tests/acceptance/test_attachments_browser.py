"""Real Chromium (Debian's, via Playwright) against uvicorn: a branch secretary uploads a PNG as the evidence
of a rectification item on the branch page and sees its preview; the image loads through the checked
download (its natural size is known, so the browser decoded it) with no CSP violation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from states.base import Stage
from tests.acceptance.conftest import PASSWORD, PEOPLE, Server, Site, shot
from tests.support import files
from tests.support.world import at
from workflow import service
from workflow.blobs import FolderStore, sha256_hex

pytestmark = pytest.mark.slow


def test_a_secretary_uploads_a_photo_as_evidence_and_sees_its_preview(
        live: tuple[Site, Server], chromium: Any, tmp_path: Path) -> None:
    site, server = live
    w = site.world
    site.app.state.blob_store = FolderStore(tmp_path / "files")
    w.drive("B1", Stage.rectification)
    w.do(service.record, "B1", w.secretary("B1"),
         {"items": [{"problem": "组织生活不规范", "measure": "每月主题党日", "due": "2026-07-31", "contact": "委员1"}],
          "submitted": True, "self_analysis": "对照标准查找不足。"}, now=at(5, 20))
    site.clock.now = at(6, 1, 10)
    photo = tmp_path / "主题党日现场.png"
    photo.write_bytes(files.png(64, 48, (30, 120, 200)))

    ctx = chromium.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        page.goto(f"{server.url}/login")
        page.get_by_label("邮箱").fill(PEOPLE["sec1"])
        page.get_by_label("密码").fill(PASSWORD)
        page.get_by_role("button", name="登录").click()
        page.wait_for_url(f"{server.url}/")
        page.goto(f"{server.url}/branches/B1#items")
        page.get_by_label("完成情况与佐证").fill("已开展主题党日，附现场照片。")
        page.get_by_label("佐证材料（扫描件、照片、文档）").set_input_files(str(photo))
        page.get_by_role("button", name="登记完成").click()
        assert "第 1 项已登记完成" in page.get_by_role("status").inner_text()
        sha = sha256_hex(photo.read_bytes())
        thumb = page.locator(f'img.thumb[src="/attachments/{sha}"]').first
        thumb.scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
        assert thumb.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [64, 48]
        assert thumb.get_attribute("alt") == "主题党日现场.png"
        assert page.get_by_role("link", name="主题党日现场.png").count() >= 1
        assert w.case("B1").state["records"]["rectification"]["items"][0]["attachments"][0]["sha256"] == sha
        shot(page, "attachments-01-evidence-preview")
        assert not violations, violations
    finally:
        ctx.close()

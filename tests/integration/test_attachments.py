"""Attachments through the use cases on a real database (SQLite and PostgreSQL): the reference inside the
event (so the chain covers the file), the index for the scope, nothing recorded when refused, and
``audit verify --files`` naming a tampered or missing file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from states.base import Stage
from tests.support import files
from tests.support.world import GB_SEC, World, at
from workflow import attachments, audit, service
from workflow.attachments import FileRefused, check_file
from workflow.blobs import FolderStore
from workflow.errors import InvalidInput
from workflow.models import AttachmentRow, EventRow

PLAN = {"items": [{"problem": "组织生活不规范", "measure": "每月主题党日", "due": "2026-07-31", "contact": "委员1"}],
        "submitted": True, "self_analysis": "对照标准查找不足。"}


def _to_rectification(world: World) -> str:
    world.drive("B1", Stage.rectification)
    sec = world.secretary("B1")
    world.do(service.record, "B1", sec, PLAN, now=at(5, 20))
    return sec


def test_evidence_files_go_into_the_event_and_the_index(world: World, tmp_path: Path) -> None:
    sec = _to_rectification(world)
    store = FolderStore(tmp_path / "files")
    pdf, png = check_file("会议记录.pdf", files.pdf()), check_file("现场照片.png", files.png())
    with world.sessions() as s, s.begin():
        service.complete_item(s, "B1", service.actor_for(s, sec), 1, "已完成，附记录。", now=at(7, 1), files=[pdf, png])
        attachments.store_all(store, [pdf, png])
    case = world.case("B1")
    item = case.state["records"]["rectification"]["items"][0]
    assert [a["sha256"] for a in item["attachments"]] == [pdf.sha256, png.sha256]
    with world.sessions() as s:
        body = s.scalars(select(EventRow.body).where(EventRow.kind == "item_completed")).one()
        assert orjson.loads(body)["payload"]["attachments"][1] == {
            "sha256": png.sha256, "size": len(files.png()), "media_type": "image/png", "name": "现场照片.png"}
        assert attachments.branches_of(s, pdf.sha256) == ["B1"]
        assert attachments.branches_of(s, "0" * 64) == [] and attachments.branches_of(s, "x") == []
        assert s.scalar(select(AttachmentRow.event_seq).where(AttachmentRow.sha256 == png.sha256)) == case.version
        assert audit.verify(s).ok
        assert attachments.check_store(s, store) == (2, [])
    assert attachments.read_checked(store, png.sha256) == files.png()


def test_a_refused_file_records_nothing(world: World) -> None:
    sec = _to_rectification(world)
    before = world.case("B1").version
    with pytest.raises(FileRefused, match="Windows 可执行程序"):
        check_file("evidence.pdf", files.exe())
    with world.sessions() as s, s.begin(), pytest.raises(InvalidInput, match="不能在数据中直接引用"):
        ref = check_file("a.pdf", files.pdf()).ref.model_dump()
        service.record(s, "B1", service.actor_for(s, sec), {"self_analysis": "补充。", "attachments": [ref]}, now=at(6, 1))
    assert world.case("B1").version == before


def test_inspection_files_and_verify_files_names_the_tampered_one(world: World, tmp_path: Path) -> None:
    world.drive("B1", Stage.acceptance)
    data_dir = tmp_path / "data"
    store = FolderStore(data_dir / "files")
    summary = check_file("验收总结.docx", files.docx())
    photo = check_file("现场.png", files.png())
    with world.sessions() as s, s.begin():
        service.inspect(s, "B1", service.actor_for(s, GB_SEC),
                        {"passed": True, "summary": "整改到位，验收通过。", "inspected_on": "2026-09-01",
                         "regrade_score": 90}, now=at(9, 1), files=[summary, photo])
        attachments.store_all(store, [summary, photo])
    assert [a["name"] for a in world.case("B1").state["inspection"]["attachments"]] == ["验收总结.docx", "现场.png"]
    path = data_dir / "files" / photo.sha256[:2] / photo.sha256[2:4] / photo.sha256
    path.write_bytes(files.png(rgb=(0, 0, 0)))
    (data_dir / "files" / summary.sha256[:2] / summary.sha256[2:4] / summary.sha256).unlink()
    with world.sessions() as s:
        n, problems = attachments.check_store(s, store)
    assert n == 2 and sorted((p.name, p.problem) for p in problems) == [("现场.png", "tampered"), ("验收总结.docx", "missing")]
    with pytest.raises(attachments.FileDamaged, match="文件已损坏或被篡改"):
        attachments.read_checked(store, photo.sha256)

    url = str(world.sessions.kw["bind"].url.render_as_string(hide_password=False))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BRANCHFLOW_")},
           "BRANCHFLOW_DATABASE_URL": url, "BRANCHFLOW_DATA_DIR": str(data_dir)}
    run = subprocess.run([sys.executable, "-m", "service.cli", "audit", "verify", "--files", "--json"],
                         check=False, capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 7, run.stderr
    report = json.loads(run.stdout)
    assert report["files"]["checked"] == 2
    assert {(p["sha256"], p["problem"], p["branch"]) for p in report["files"]["problems"]} == {
        (photo.sha256, "tampered", "B1"), (summary.sha256, "missing", "B1")}
    text = subprocess.run([sys.executable, "-m", "service.cli", "audit", "verify", "--files"],
                          check=False, capture_output=True, text=True, env=env, timeout=120).stdout
    assert f"附件“现场.png”（{photo.sha256}，党支部 B1" in text and "内容与哈希值不符" in text and "存储中缺失" in text


def test_cli_complete_with_attach_files_the_evidence_and_refuses_a_renamed_program(world: World, tmp_path: Path) -> None:
    sec = _to_rectification(world)
    data_dir = tmp_path / "data"
    (tmp_path / "照片.png").write_bytes(files.png())
    (tmp_path / "evidence.pdf").write_bytes(files.exe())
    url = str(world.sessions.kw["bind"].url.render_as_string(hide_password=False))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BRANCHFLOW_")},
           "BRANCHFLOW_DATABASE_URL": url, "BRANCHFLOW_DATA_DIR": str(data_dir)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "service.cli", *args], check=False, capture_output=True,
                              text=True, env=env, timeout=120)

    bad = cli("complete", "B1", "1", "--evidence", "已完成。", "--attach", str(tmp_path / "evidence.pdf"),
              "--as", sec, "--now", "2026-07-01T10:00+08:00")
    assert bad.returncode == 2 and "Windows 可执行程序" in bad.stderr + bad.stdout
    assert not world.case("B1").state["records"]["rectification"]["items"][0]["done"]
    ok = cli("complete", "B1", "1", "--evidence", "已完成。", "--attach", str(tmp_path / "照片.png"),
             "--as", sec, "--now", "2026-07-01T10:00+08:00")
    assert ok.returncode == 0, ok.stderr
    item = world.case("B1").state["records"]["rectification"]["items"][0]
    assert item["attachments"][0]["name"] == "照片.png"
    assert FolderStore(data_dir / "files").get(item["attachments"][0]["sha256"]) == files.png()
    assert cli("audit", "verify", "--files").returncode == 0

"""The audit page's Merkle-log part: the latest checkpoint, pasted checkpoints checked, a proof download."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from states.base import Stage
from tests.acceptance.conftest import Site
from tests.support.world import at
from workflow import checkpoint


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> checkpoint.Signer:
    path = tmp_path / "audit.key"
    monkeypatch.setenv("BRANCHFLOW_AUDIT_KEY_FILE", str(path))
    return checkpoint.keygen(path, "branchflow.local/audit")


def test_latest_checkpoint_paste_check_and_proof_download(key: checkpoint.Signer, site: Site) -> None:
    world = site.world
    world.drive("B1", Stage.self_assessment)
    with world.sessions() as s, s.begin():
        cp1 = checkpoint.make(s, key, reason="manual", now=at(4, 1)).note
    web = site.page_client("auditor")
    page = web.get("/audit/log").text
    assert "最新检查点" in page and cp1.splitlines()[2] in page

    other = checkpoint.generate("branchflow.local/audit")
    with world.sessions() as s, s.begin():
        forged = checkpoint.make(s, other, reason="manual", now=at(4, 1)).note
    page = web.get("/audit/log", params={"checkpoints": cp1.replace("\n", "\r\n") + "\r\n" + forged}).text
    assert "第 1 个检查点：一致：今天的日志是它的追加延续" in page
    assert "第 2 个检查点：无效——检查点不是由受信任的密钥签名的" in page

    with world.sessions() as s, s.begin():  # someone with the database rewrites B1's first event
        s.execute(text("UPDATE events SET hash = :h WHERE seq = 1 AND case_id = (SELECT c.id FROM cases c "
                       "JOIN branches b ON b.id = c.branch_id WHERE b.code = 'B1')"), {"h": "0" * 64})
    page = web.get("/audit/log", params={"checkpoints": cp1}).text
    assert "不一致——今天的日志不是检查点" in page and "B1 事件 #1" in page

    r = web.get("/audit/proof", params={"branch": "B2", "seq": "1"})
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    assert r.json()["entry"].endswith("B2 事件 #1")
    assert site.page_client("sec1").get("/audit/log").status_code == 403

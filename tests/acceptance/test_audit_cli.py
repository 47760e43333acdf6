"""The audit commands as a subprocess, and the standalone verifier of docs/audit.md run as its own program."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.test_cli import CLI, ROOT
from workflow.audit import canonical, chain


def verifier_source() -> str:
    """The one ```python block of docs/audit.md, exactly as an auditor would copy it."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "audit.md").read_text("utf-8"), re.DOTALL)
    assert len(blocks) == 1
    return blocks[0]


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("audit-demo")
    CLI(tmp)("demo", "--data-dir", str(tmp / "data"), "--branches", "6", "--until", "2026-05-10")
    return tmp / "data"


@pytest.fixture
def demo(tmp_path: Path, demo_db: Path) -> CLI:
    """A simulated spring (six branches) in a data folder of this test's own."""
    shutil.copytree(demo_db, tmp_path / "data")
    return CLI(tmp_path)


def _verifier(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp / "verify_audit.py"
    script.write_text(verifier_source(), "utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-I", str(script), *args], cwd=tmp, env=env, text=True,
                          capture_output=True, timeout=60, check=False)


def test_keygen_checkpoint_verify_prove_and_the_standalone_verifier(demo: CLI) -> None:
    cli, tmp = demo, demo.tmp
    out = cli("audit", "keygen").stdout
    key = cli("audit", "pubkey").stdout.strip()
    assert key in out and key.startswith("branchflow.local/audit+")
    assert stat.S_IMODE((tmp / "data" / "audit.key").stat().st_mode) == 0o600
    assert "已存在" in cli("audit", "keygen", code=2).stderr

    assert "已生成检查点" in cli("audit", "checkpoint", "-o", "cp1.txt").stdout
    branch = sqlite3.connect(tmp / "data" / "branchflow.db").execute(
        "SELECT code FROM branches ORDER BY code LIMIT 1").fetchone()[0]
    cli("person", "add", "new.auditor@demo.edu.cn", "--name", "新审计", "--role", "auditor")
    cli("audit", "checkpoint", "-o", "cp2.txt")
    r = cli("audit", "verify", "--checkpoint", "cp1.txt", "--checkpoint", "cp2.txt")
    assert r.stdout.count("一致（今天的日志是它的追加延续）") == 2 and "校验通过" in r.stdout

    # the demo runs three committees' campaigns side by side: name the branch's own (海棠's)
    cli("export-events", "--branch", branch, "--campaign", "haitang-2026", "-o", "b.jsonl")
    last = json.loads((tmp / "b.jsonl").read_text("utf-8").splitlines()[-1])
    cli("audit", "prove", branch, str(last["seq"]), "--campaign", "haitang-2026", "-o", "proof.json")
    cli("audit", "consistency", "--from", "cp1.txt", "-o", "cons.json")
    args = ["--key", key, "--checkpoint", "cp2.txt", "--old-checkpoint", "cp1.txt", "--consistency", "cons.json",
            "--proof", "proof.json", "--events", "b.jsonl"]
    r = _verifier(tmp, *args)
    assert r.returncode == 0, r.stderr
    assert "一致性证明成立" in r.stdout and "导出的整个党支部历史都在检查点的日志中" in r.stdout and "全部通过" in r.stdout

    # a forged proof, a checkpoint with its size changed, another key: the verifier says no
    p = json.loads((tmp / "proof.json").read_text("utf-8"))
    p["leaf_data"] = p["leaf_data"].replace('"seq":', '"seq":1')
    (tmp / "forged.json").write_text(json.dumps(p), "utf-8")
    r = _verifier(tmp, "--key", key, "--checkpoint", "cp2.txt", "--proof", "forged.json")
    assert r.returncode != 0 and "包含证明不成立" in r.stderr
    lines = (tmp / "cp1.txt").read_text("utf-8").split("\n")
    lines[1] = str(int(lines[1]) - 1)
    (tmp / "bad.txt").write_text("\n".join(lines), "utf-8")
    r = _verifier(tmp, "--key", key, "--checkpoint", "bad.txt")
    assert r.returncode != 0 and "签名无效" in r.stderr
    r = cli("audit", "verify", "--checkpoint", "bad.txt", code=7)
    assert "无效——签名无效" in r.stdout

    # someone with the database edits a branch's facts and rewrites its record to match
    db = sqlite3.connect(tmp / "data" / "branchflow.db")
    with db:
        db.execute("UPDATE branches SET member_count = 99 WHERE code = ?", (branch,))
        mid, body, prev = db.execute("SELECT id, body, prev_hash FROM master_events WHERE subject = ? "
                                     "ORDER BY seq DESC", (f"branch:{branch}",)).fetchone()
        ev = json.loads(body)
        ev["data"]["member_count"] = 99
        nb = canonical(ev)
        db.execute("UPDATE master_events SET body = ?, hash = ? WHERE id = ?", (nb, chain(prev, nb), mid))
    db.close()
    r = cli("audit", "verify", "--checkpoint", "cp1.txt", code=7)
    assert "不一致——今天的日志不是检查点" in r.stdout and f"基础数据 branch:{branch}" in r.stdout


def test_unknown_branch_or_campaign_is_an_error_not_a_pass(demo: CLI) -> None:
    r = demo("audit", "verify", "--branch", "NOPE", code=3)
    assert "找不到党支部" in r.stderr and "校验通过" not in r.stdout
    r = demo("audit", "verify", "--campaign", "NOPE", code=3)
    assert "找不到活动" in r.stderr


def test_parallel_verify_reports_the_same(demo: CLI) -> None:
    one = json.loads(demo("audit", "verify", "--json").stdout)
    two = json.loads(demo("audit", "verify", "--json", "--workers", "2").stdout)
    assert one["ok"] and two["ok"] and (one["cases"], one["events"]) == (two["cases"], two["events"])
    db = sqlite3.connect(demo.tmp / "data" / "branchflow.db")
    with db:
        db.execute("UPDATE events SET body = body || ' ' WHERE seq = 2")
    db.close()
    bad = json.loads(demo("audit", "verify", "--json", "--workers", "2", code=7).stdout)
    assert len({p["branch"] for p in bad["problems"]}) == one["cases"]

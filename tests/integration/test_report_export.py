"""The JSON Lines export for auditors, checked by exactly the snippet docs/reports.md gives them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from reports.export import export_events
from states.base import Stage
from tests.support.world import World
from workflow import audit
from workflow.errors import NotFound
from workflow.models import EventRow

DOC = Path(__file__).resolve().parents[2] / "docs" / "reports.md"


def auditor_snippet() -> str:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"<!-- auditor-snippet:start -->\s*```python\n(.*?)```\s*<!-- auditor-snippet:end -->", text, re.DOTALL)
    assert m, "docs/reports.md lost its auditor snippet"
    return m.group(1)


def run_snippet(tmp_path: Path, export: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "verify_events.py"
    script.write_text(auditor_snippet(), encoding="utf-8")
    # Run it as an auditor would: a bare interpreter, outside the project, no branchflow importable.
    return subprocess.run([sys.executable, "-I", str(script), str(export)], cwd=tmp_path, text=True,
                          capture_output=True, timeout=60, check=False)


@pytest.fixture
def exported(world: World, tmp_path: Path) -> Path:
    world.drive("B1", Stage.accepted)
    world.drive("B3", Stage.publicity, per_item=0.5)
    path = tmp_path / "events.jsonl"
    with world.sessions() as s:
        path.write_bytes(b"".join(export_events(s, batch=2)))  # tiny pages: the paging is exercised too
    return path


def test_export_has_every_event_with_its_chain(world: World, exported: Path) -> None:
    lines = [json.loads(x) for x in exported.read_text(encoding="utf-8").splitlines()]
    with world.sessions() as s:
        assert len(lines) == s.scalar(select(func.count()).select_from(EventRow))
        b1 = list(audit.events_of(s, world.case("B1").row.id))
    mine = [e for e in lines if e["branch"] == "B1"]
    assert [e["seq"] for e in mine] == list(range(1, len(b1) + 1))
    assert [e["hash"] for e in mine] == [e["hash"] for e in b1]
    assert mine[0]["prev_hash"] == "0" * 64 and mine[0]["kind"] == "opened"
    assert {e["branch"] for e in lines} == {"B1", "B2", "B3", "B4"}
    assert all(e["campaign"] == world.campaign for e in lines)
    assert all(e["at"] == json.loads(e["body"])["at"] and e["actor"] == json.loads(e["body"])["actor"] for e in lines)


def test_the_documented_snippet_verifies_an_export(tmp_path: Path, exported: Path) -> None:
    r = run_snippet(tmp_path, exported)
    assert r.returncode == 0, r.stderr
    n = len(exported.read_text(encoding="utf-8").splitlines())
    assert r.stdout.splitlines()[0] == f"校验通过：4 个党支部，{n} 条事件"


@pytest.mark.parametrize("tamper", ["edit", "drop", "swap"])
def test_the_documented_snippet_catches_tampering(tmp_path: Path, exported: Path, tamper: str) -> None:
    lines = exported.read_text(encoding="utf-8").splitlines()
    i = next(k for k, x in enumerate(lines) if json.loads(x)["kind"] == "graded")
    if tamper == "edit":  # raise the score by hand in the signed body
        e = json.loads(lines[i])
        e["body"] = re.sub(r'"total":[0-9.]+', '"total":99.0', e["body"])
        lines[i] = json.dumps(e, ensure_ascii=False)
    elif tamper == "drop":
        del lines[i]
    else:
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    bad = tmp_path / "tampered.jsonl"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = run_snippet(tmp_path, bad)
    assert r.returncode == 1
    assert "校验失败" in r.stderr and "被修改、删除、插入或调换了顺序" in r.stderr


def test_export_of_one_branch_and_unknown_codes(world: World) -> None:
    world.drive("B2", Stage.self_assessment)
    with world.sessions() as s:
        lines = [json.loads(x) for x in b"".join(export_events(s, branch="B2")).decode().splitlines()]
        assert {e["branch"] for e in lines} == {"B2"} and [e["seq"] for e in lines] == [1, 2, 3]
        with pytest.raises(NotFound, match="找不到党支部 'B9'"):
            export_events(s, branch="B9")
        with pytest.raises(NotFound, match="找不到活动"):
            export_events(s, campaign="nope")

"""`branchflow ballot …` as a subprocess on a SQLite file: open with a QR sheet, status, close, export, recount."""

from __future__ import annotations

import json
import re
from pathlib import Path

from states.base import Stage
from tests.acceptance.test_cli import CLI
from tests.support.world import GB_SEC, World, at
from workflow import ballots
from workflow.db import make_engine, session_factory
from workflow.migrate import upgrade


def test_ballot_commands_open_close_export_and_recount(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bf.db'}"
    engine = make_engine(url)
    upgrade(engine)
    world = World(session_factory(engine))
    world.drive("B1", Stage.member_evaluation)
    cli = CLI(tmp_path, url)
    r = cli("ballot", "open", "B1", "--as", GB_SEC, "--closes", "2026-04-15T18:00", "--codes", "6",
            "--sheet", "sheet.html", "--base-url", "https://vote.example.cn", "--now", "2026-04-10T09:00")
    assert "现场测评码 6 个" in r.stdout
    sheet = (tmp_path / "sheet.html").read_text(encoding="utf-8")
    codes = re.findall(r'data-code="([^"]+)"', sheet)
    assert len(codes) == 6 and sheet.count("<svg") == 6 and f'data-link="https://vote.example.cn/v/{codes[0]}"' in sheet
    ballot_id = int(re.search(r"网上测评 (\d+) 已发起", r.stdout).group(1))  # type: ignore[union-attr]
    with world.sessions() as s, s.begin():
        scores = [c["score"] for c in ballots.get_ballot(s, ballot_id).form["rating"]["choices"]]
        for i, code in enumerate(codes[:5]):
            ballots.cast_vote(s, code, {"rating": scores[i % 2], "satisfied_with_members": i != 0,
                                        "satisfied_with_secretary": True}, now=at(4, 11))
    assert "已投票 5 / 6" in cli("ballot", "status", str(ballot_id)).stdout
    r = cli("ballot", "close", str(ballot_id), "--as", GB_SEC, "--now", "2026-04-12T09:00")
    assert "5 张选票" in r.stdout and "群众对党员发挥作用满意率 80.0%" in r.stdout
    commitment = r.stdout.split("承诺值：")[1].strip()
    cli("ballot", "export", str(ballot_id), "--as", GB_SEC, "-o", "ballots.json")
    cli("ballot", "export", str(ballot_id), "--as", GB_SEC, "--format", "csv", "-o", "ballots.csv")
    assert "与承诺值一致" in cli("ballot", "recount", "ballots.json").stdout
    assert "与承诺值一致" in cli("ballot", "recount", "ballots.csv", "--commitment", commitment).stdout
    data = json.loads((tmp_path / "ballots.json").read_text(encoding="utf-8"))
    data["ballots"][0]["satisfied_with_secretary"] = not data["ballots"][0]["satisfied_with_secretary"]
    cli.file("tampered.json", data)
    assert "与承诺值不一致" in cli("ballot", "recount", "tampered.json", code=1).stderr
    r = cli("ballot", "close", str(ballot_id), "--as", GB_SEC, "--now", "2026-04-12T10:00", code=5)
    assert "已经关闭" in r.stderr

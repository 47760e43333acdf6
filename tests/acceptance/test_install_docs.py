"""docs/deploy.md's settings table names every setting the program reads (each ``BRANCHFLOW_`` variable)."""

from __future__ import annotations

import re
from pathlib import Path

from workflow.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def test_every_setting_is_in_the_deploy_guides_table() -> None:
    rows = set(re.findall(r"^\| `(BRANCHFLOW_[A-Z0-9_]+)` \|", DEPLOY.read_text(encoding="utf-8"), re.MULTILINE))
    wanted = {f"BRANCHFLOW_{name.upper()}" for name in Settings.model_fields}
    assert not wanted - rows, f"add to docs/deploy.md §4: {sorted(wanted - rows)}"

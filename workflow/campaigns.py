"""Creating a campaign from a preset or a file, and opening every branch's case in it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow.campaign import parse_campaign_text, preset_text
from workflow.errors import InvalidInput
from workflow.models import CampaignRow
from workflow.service import open_missing_cases


def create_campaign(session: Session, *, preset: str | None = None, file: str | Path | None = None,
                    year: int | None = None, now: dt.datetime) -> tuple[CampaignRow, int]:
    if preset:
        text = preset_text(preset, year=year)
        source = f"preset:{preset}"
    elif file:
        p = Path(file)
        if not p.exists():
            raise InvalidInput(f"找不到活动配置文件 {p}")
        text = p.read_text(encoding="utf-8-sig")
        source = str(p)
    else:
        raise InvalidInput("请给出预设名或活动配置文件")
    c = parse_campaign_text(text, source=source)
    if session.scalar(select(CampaignRow).where(CampaignRow.code == c.code)) is not None:
        raise InvalidInput(f"活动 {c.code} 已存在")
    row = CampaignRow(code=c.code, name=c.name, year=c.year, config=text, created_at=now)
    session.add(row)
    session.flush()
    opened = open_missing_cases(session, c.code, now=now)
    return row, opened

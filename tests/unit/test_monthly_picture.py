"""The monthly digest (月调度) carries a picture of where the campaign stands, drawn so any mail client shows it."""

from __future__ import annotations

import re

from notifications.render import render


def test_monthly_digest_draws_a_bar_per_stage_with_the_overdue_part_in_red() -> None:
    stages = [
        {"label": "调查摸底", "count": 4, "overdue": 1},
        {"label": "支部自评", "count": 2, "overdue": 0},
        {"label": "党员群众测评", "count": 0, "overdue": 0},
    ]
    item = {"campaign": "测试活动", "month": "2026-04", "as_of": "2026年4月1日", "total": 6, "overdue_total": 1, "stages": stages,
            "general_branches": [{"name": "教工党总支", "overdue": 1}], "reminders": 3, "escalations": 1,
            "supervision_orders": 0}
    out = render("monthly", {"recipient_name": "组织部", "items": [item], "keys": ["k1"]})
    html = out.html
    red = [int(w) for w in re.findall(r"background: #c0392b; width: (\d+)px", html)]
    amber = [int(w) for w in re.findall(r"background: #e9a23b; width: (\d+)px", html)]
    assert red == [60]  # 1 of the longest bar's 4 → a quarter of 240 px
    assert amber == [180, 120]  # 3 on time in the survey, 2 in self-assessment
    assert "<svg" not in html and "<img" not in html

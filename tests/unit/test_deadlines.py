"""The pure deadline logic: the ladder, working-day shifts, catch-up after downtime, the sweep's windows."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest

from scheduler.deadlines import Schedule, dedup_key, ladder, merge_dates
from workflow.campaign import load_preset, parse_campaign_text, preset_text
from workflow.errors import CalendarUnknown

TZ = ZoneInfo("Asia/Shanghai")


def at(month: int, day: int, hour: int = 9, minute: int = 0, year: int = 2026) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=TZ)


def D(month: int, day: int, year: int = 2026) -> dt.date:
    return dt.date(year, month, day)


@pytest.fixture(scope="module")
def sched() -> Schedule:
    return Schedule(load_preset("haitang-2022", year=2026))


def campaign_with(reminders: str, year: int = 2026):  # type: ignore[no-untyped-def]
    text = preset_text("haitang-2022", year=year)
    return parse_campaign_text(text + "\n[reminders]\n" + reminders, source="test")


def test_default_ladder_is_7_3_1_days_before_then_1_and_3_days_after(sched: Schedule) -> None:
    rungs = ladder(sched.policy)
    assert [(r.id, r.kind, r.days) for r in rungs] == [
        ("before-7", "reminder", -7), ("before-3", "reminder", -3), ("before-1", "reminder", -1),
        ("after-1", "escalation", 1), ("after-3", "escalation", 3),
    ]
    assert rungs[3].to == ("general_branch_secretary",) and not rungs[3].supervision_order
    assert rungs[4].to == ("org_department", "committee") and rungs[4].supervision_order


def test_reminders_move_to_the_working_day_before_escalations_to_the_one_after(sched: Schedule) -> None:
    r = {x.id: x for x in sched.rungs}
    # self-assessment deadline Fri 2026-04-10: 7 days before is Fri 04-03, a working day
    assert sched.send_at(D(4, 10), r["before-7"]) == at(4, 3)
    # survey deadline Tue 03-31: 3 days before is Sat 03-28 → Fri 03-27
    assert sched.send_day(D(3, 31), r["before-3"]) == D(3, 27)
    # after the Fri 04-10 deadline: +1 is Sat 04-11 → Mon 04-13, the same day as +3
    assert sched.send_day(D(4, 10), r["after-1"]) == D(4, 13)
    assert sched.send_day(D(4, 10), r["after-3"]) == D(4, 13)
    # publicity deadline Thu 04-30: May Day holiday (05-01…05-05) pushes both escalations to Wed 05-06
    assert sched.send_day(D(4, 30), r["after-1"]) == D(5, 6)


def test_without_skipping_non_working_days_rungs_stay_on_their_day() -> None:
    s = Schedule(campaign_with("skip_non_working_days = false\nsend_hour = 8\n"))
    r = {x.id: x for x in s.rungs}
    assert s.send_at(D(4, 10), r["after-1"]) == at(4, 11, 8)
    assert s.send_at(D(3, 31), r["before-3"]) == at(3, 28, 8)


def test_one_tick_a_day_sends_each_rung_once_on_its_day(sched: Schedule) -> None:
    sent = []
    t = at(3, 1)
    while t < at(5, 1):
        nxt = t + dt.timedelta(days=1)
        d = sched.decide(D(4, 10), t, nxt)
        if d is not None:
            assert d.skipped == () or all(sched.send_at(D(4, 10), x) == sched.send_at(D(4, 10), d.send)
                                          for x in d.skipped)  # only same-slot merges on a daily tick
            sent.append((nxt.date(), d.send.id if d.send else None))
        t = nxt
    assert sent == [
        (D(4, 3), "before-7"), (D(4, 7), "before-3"), (D(4, 9), "before-1"),
        (D(4, 13), "after-3"),  # after-1 moved onto the same Monday: merged into one mail
        (D(4, 20), "after-10"), (D(4, 27), "after-17"),
    ]


def test_same_slot_escalations_tell_both_rungs_people(sched: Schedule) -> None:
    d = sched.decide(D(4, 10), at(4, 12), at(4, 13))
    assert d is not None and d.send is not None
    assert d.send.id == "after-3" and d.supervision_order
    assert d.to == ("general_branch_secretary", "org_department", "committee")
    assert [x.id for x in d.skipped] == ["after-1"]


def test_after_downtime_only_the_reminder_that_still_makes_sense_is_sent(sched: Schedule) -> None:
    d = sched.decide(D(4, 10), at(4, 2), at(4, 9, 9, 30))
    assert d is not None and d.send is not None
    assert d.send.id == "before-1"
    assert [x.id for x in d.skipped] == ["before-7", "before-3"]


def test_a_reminder_is_stale_once_its_deadline_day_is_over(sched: Schedule) -> None:
    d = sched.decide(D(4, 10), at(4, 8), at(4, 11, 8))
    assert d is not None
    assert d.send is None and [x.id for x in d.skipped] == ["before-1"]


def test_downtime_over_the_supervision_rung_still_issues_the_supervision_order(sched: Schedule) -> None:
    d = sched.decide(D(4, 10), at(4, 10, 10), at(4, 21))
    assert d is not None and d.send is not None
    assert d.send.id == "after-10"
    assert d.supervision_order
    assert [x.id for x in d.skipped] == ["after-1", "after-3"]


def test_nothing_is_due_twice_or_before_the_watermark(sched: Schedule) -> None:
    assert sched.decide(D(4, 10), at(4, 3), at(4, 3)) is None
    assert sched.decide(D(4, 10), at(4, 3, 9), at(4, 6, 23)) is None
    assert sched.decide(D(4, 10), at(4, 10), at(4, 1)) is None


def test_weekly_repeats_until_resolved(sched: Schedule) -> None:
    rungs = sched.rungs_until(D(4, 10), at(5, 20))
    assert [r.id for r in rungs][-6:] == ["after-3", "after-10", "after-17", "after-24", "after-31", "after-38"]
    assert [sched.send_day(D(4, 10), r) for r in rungs[-2:]] == [D(5, 11), D(5, 18)]
    assert all(r.to == ("org_department", "committee") and not r.supervision_order for r in rungs[-5:])


@pytest.mark.parametrize("prev,now", [
    (at(4, 6), at(4, 7)),            # an ordinary daily tick
    (at(3, 1, 8), at(9, 15)),        # the first tick of a year, or months of downtime
    (at(4, 30, 12), at(5, 6, 9)),    # over the May Day holiday
    (at(4, 13, 9), at(4, 13, 9, 5)), # a tick five minutes later: nothing new
    (at(7, 1, 3), at(7, 1, 12)),     # a summer morning
])
def test_deadline_windows_select_exactly_the_deadlines_with_something_due(sched: Schedule, prev: dt.datetime,
                                                                         now: dt.datetime) -> None:
    lowest = D(3, 31)
    windows = sched.deadline_windows(prev, now, lowest)
    day = lowest
    # up to mid-December: later deadlines have escalations in 2027, a year the calendar does not know
    # (never guessed: see test_a_year_the_calendar_does_not_know_is_never_guessed)
    while day <= D(12, 15):
        inside = any(a <= day <= b for a, b in windows)
        assert inside == bool(sched.rungs_in(day, prev, now)), day
        day += dt.timedelta(days=1)


def test_windows_are_few_ranges_not_every_branch(sched: Schedule) -> None:
    windows = sched.deadline_windows(at(4, 6), at(4, 7), D(3, 31))
    assert 1 <= len(windows) <= 8
    assert all((b - a).days < 7 for a, b in windows)


def test_monthly_digest_on_its_day_and_only_the_latest_after_downtime(sched: Schedule) -> None:
    assert sched.monthly_due(at(3, 31), at(4, 1)) == ("2026-04", at(4, 1))
    assert sched.monthly_due(at(4, 1), at(4, 2)) is None
    # May 1 is a holiday (through 05-05): the digest goes out on Wed 05-06; a long gap sends only May's
    assert sched.monthly_due(at(3, 1, 8), at(5, 10)) == ("2026-05", at(5, 6))


def test_a_year_the_calendar_does_not_know_is_never_guessed() -> None:
    # issue 12: no silent Monday–Friday fallback — the day is refused, naming what to add
    s = Schedule(campaign_with("", year=2031))
    r = {x.id: x for x in s.rungs}
    with pytest.raises(CalendarUnknown, match=r"2031.*\[calendar\]"):
        s.send_day(D(4, 12, 2031), r["after-1"])


def test_a_year_with_the_recorded_weekdays_only_choice_ticks_on_weekdays() -> None:
    text = preset_text("haitang-2022", year=2031) + "\n[calendar]\nweekdays_only = true\n"
    s = Schedule(parse_campaign_text(text, source="test"))
    r = {x.id: x for x in s.rungs}
    # 2031-04-12 is a Saturday: +1 day falls on Sunday 04-13 → Monday 04-14
    assert s.send_day(D(4, 12, 2031), r["after-1"]) == D(4, 14, 2031)


def test_helpers() -> None:
    assert merge_dates([D(1, 3), D(1, 1), D(1, 2), D(1, 9)]) == [(D(1, 1), D(1, 3)), (D(1, 9), D(1, 9))]
    key = dedup_key("haitang-2026", "B1", "survey", D(3, 31), "before-7")
    assert key == "haitang-2026/B1/survey/2026-03-31/before-7"
    assert re.fullmatch(r"[^/]+/[^/]+/[a-z_]+/\d{4}-\d\d-\d\d/(before|after)-\d+", key)

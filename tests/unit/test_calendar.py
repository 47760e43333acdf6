"""Publicity windows in working days across Chinese public holidays, and campaign overrides.

2026 dates come from ``chinesecalendar`` (the State Council's 2026 schedule): 清明 4–6 Apr, 劳动节 1–5 May
with Saturday 9 May a make-up workday. Nothing here relies on the library for 2027 or later: those years
use dates the test lists itself.
"""

from __future__ import annotations

import datetime as dt

import chinese_calendar
import pytest

from states.base import Stage
from workflow.calendar import WorkingCalendar, for_campaign
from workflow.campaign import parse_campaign_text, preset_text
from workflow.errors import CalendarUnknown, InvalidInput

D = dt.date
LIB = WorkingCalendar()


def window_end(cal: WorkingCalendar, start: dt.date, days: int = 5) -> dt.date:
    """Last day of a publicity window of ``days`` working days that opens on ``start``."""
    return cal.add_working_days(start, days)


# ---------------------------------------------------------------- 2026 from chinesecalendar


def test_library_data_for_2026_as_the_tests_assume() -> None:
    # guard: the facts the following tests are built on
    assert [chinese_calendar.is_holiday(D(2026, 4, d)) for d in (3, 4, 5, 6, 7)] == [False, True, True, True, False]
    assert all(chinese_calendar.is_holiday(D(2026, 5, d)) for d in range(1, 6))
    assert D(2026, 5, 9).weekday() == 5 and chinese_calendar.is_workday(D(2026, 5, 9))


def test_qingming_2026() -> None:
    # Thu 2 Apr (1), Fri 3 Apr (2), 4–6 Apr 清明, Tue 7 (3), Wed 8 (4), Thu 9 (5)
    assert window_end(LIB, D(2026, 4, 2)) == D(2026, 4, 9)
    assert [LIB.is_working_day(D(2026, 4, d)) for d in range(3, 8)] == [True, False, False, False, True]
    assert LIB.next_working_day(D(2026, 4, 4)) == D(2026, 4, 7)


def test_window_opening_on_a_holiday_starts_on_the_next_working_day() -> None:
    # opened on 清明 (Sat 4 Apr): Tue 7 (1) … Mon 13 (5)
    assert window_end(LIB, D(2026, 4, 4)) == D(2026, 4, 13)


def test_labour_day_2026() -> None:
    # Wed 29 Apr (1), Thu 30 Apr (2), 1–5 May 劳动节, Wed 6 (3), Thu 7 (4), Fri 8 (5)
    assert window_end(LIB, D(2026, 4, 29)) == D(2026, 5, 8)
    assert not any(LIB.is_working_day(D(2026, 5, d)) for d in range(1, 6))


def test_make_up_saturday_2026_counts() -> None:
    # Thu 30 Apr (1), 1–5 May off, Wed 6 (2), Thu 7 (3), Fri 8 (4), Sat 9 May 调休上班 (5)
    assert LIB.is_working_day(D(2026, 5, 9))
    assert not LIB.is_working_day(D(2026, 5, 10))  # the Sunday after is a rest day
    assert window_end(LIB, D(2026, 4, 30)) == D(2026, 5, 9)


def test_ordinary_weekend_2026() -> None:
    # Fri 12 Jun (1), weekend, Mon 15 … Thu 18 (5)
    assert window_end(LIB, D(2026, 6, 12)) == D(2026, 6, 18)


# ---------------------------------------------------------------- campaign overrides


def test_listed_holiday_wins() -> None:
    cal = WorkingCalendar(holidays=[D(2026, 4, 8)])  # an ordinary Wednesday made a holiday
    assert not cal.is_working_day(D(2026, 4, 8))
    # 2 (1), 3 (2), 7 (3), 9 (4), 10 (5)
    assert window_end(cal, D(2026, 4, 2)) == D(2026, 4, 10)


def test_listed_workday_wins() -> None:
    cal = WorkingCalendar(workdays=[D(2026, 4, 4)])  # Saturday of 清明 made a workday
    assert cal.is_working_day(D(2026, 4, 4))
    # 2 (1), 3 (2), 4 (3), 7 (4), 8 (5)
    assert window_end(cal, D(2026, 4, 2)) == D(2026, 4, 8)


def test_campaign_overrides_through_the_campaign_file() -> None:
    text = preset_text("haitang-2022", year=2026) + "\n[calendar]\nholidays = [2026-04-08]\nworkdays = [2026-04-04]\n"
    c = parse_campaign_text(text)
    cal = for_campaign(c)
    # 2 (1), 3 (2), 4 (3, listed workday), 7 (4), 8 listed holiday, 9 (5)
    assert window_end(cal, D(2026, 4, 2)) == D(2026, 4, 9)


def test_a_day_cannot_be_both() -> None:
    text = preset_text("haitang-2022", year=2026) + "\n[calendar]\nholidays = [2026-04-08]\nworkdays = [2026-04-08]\n"
    with pytest.raises(InvalidInput, match="既是节假日又是调休工作日"):
        parse_campaign_text(text)


# ---------------------------------------------------------------- a year the library does not know


def test_unknown_year_without_overrides_is_refused() -> None:
    assert not LIB.knows(2030)
    with pytest.raises(CalendarUnknown) as exc:
        window_end(LIB, D(2030, 4, 26))
    msg = str(exc.value)
    assert "2030" in msg and "[calendar]" in msg and "holidays" in msg and "workdays" in msg


def test_unknown_year_via_campaign_without_overrides() -> None:
    c = parse_campaign_text(preset_text("henan-2012", year=2030))
    cal = for_campaign(c)
    with pytest.raises(CalendarUnknown, match="2030"):
        cal.add_working_days(c.deadlines[Stage.committee_grading], 5)


# The campaign's own list for 2030 (not the library's, which has no 2030): a Labour Day 1–5 May
# (Wed–Sun) with Saturday 27 Apr a make-up workday.
CAL_2030 = """
[calendar]
holidays = [2030-05-01, 2030-05-02, 2030-05-03, 2030-05-04, 2030-05-05]
workdays = [2030-04-27]
"""


def test_unknown_year_with_overrides_works() -> None:
    c = parse_campaign_text(preset_text("haitang-2022", year=2030) + CAL_2030)
    cal = for_campaign(c)
    assert cal.knows(2030)
    # Fri 26 Apr (1), Sat 27 listed workday (2), Sun 28 off, Mon 29 (3), Tue 30 (4), 1–5 May listed, Mon 6 (5)
    assert window_end(cal, D(2030, 4, 26)) == D(2030, 5, 6)
    # outside the listed days the year falls back to Monday–Friday
    assert cal.is_working_day(D(2030, 6, 3)) and not cal.is_working_day(D(2030, 6, 1))


def test_overrides_for_one_year_do_not_cover_the_next() -> None:
    cal = WorkingCalendar(holidays=[D(2030, 1, 1)])
    assert cal.is_working_day(D(2030, 12, 31))
    with pytest.raises(CalendarUnknown, match="2031"):
        cal.is_working_day(D(2031, 1, 2))

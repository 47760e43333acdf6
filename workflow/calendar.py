"""Working days in China: ``chinesecalendar`` plus a campaign's own holidays and make-up workdays.

``chinesecalendar`` knows 2004–2026 only. For any other year the campaign must list its holidays (and
make-up workdays); a year neither knows raises :class:`CalendarUnknown` instead of guessing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING

import chinese_calendar

from workflow.errors import CalendarUnknown

if TYPE_CHECKING:
    from workflow.campaign import Campaign


class WorkingCalendar:
    """Answers ``is_working_day``; campaign overrides win over the library's data."""

    def __init__(self, *, holidays: Iterable[dt.date] = (), workdays: Iterable[dt.date] = ()) -> None:
        self.holidays = frozenset(holidays)
        self.workdays = frozenset(workdays)
        self._listed_years = {d.year for d in self.holidays | self.workdays}

    def knows(self, year: int) -> bool:
        return year in self._listed_years or _library_knows(year)

    def is_working_day(self, day: dt.date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        if _library_knows(day.year):
            return bool(chinese_calendar.is_workday(day))
        if day.year in self._listed_years:
            return day.weekday() < 5
        raise CalendarUnknown(
            f"工作日历不包含 {day.year} 年（chinesecalendar 只覆盖到 {_LAST_KNOWN} 年），"
            f"且活动配置未列出该年的节假日：请在活动文件 [calendar] 中填写 holidays 和 workdays。"
        )

    def add_working_days(self, start: dt.date, n: int) -> dt.date:
        """The date of the n-th working day counting ``start`` as day 1 if it is a working day."""
        if n < 1:
            raise ValueError("n must be ≥ 1")
        day = start
        count = 0
        while True:
            if self.is_working_day(day):
                count += 1
                if count == n:
                    return day
            day += dt.timedelta(days=1)

    def next_working_day(self, day: dt.date) -> dt.date:
        while not self.is_working_day(day):
            day += dt.timedelta(days=1)
        return day


def _probe_last_known() -> int:
    year = 2004
    while True:
        try:
            chinese_calendar.is_workday(dt.date(year + 1, 6, 1))
        except NotImplementedError:
            return year
        year += 1
        if year > 2100:
            return year


_LAST_KNOWN = _probe_last_known()


def _library_knows(year: int) -> bool:
    return 2004 <= year <= _LAST_KNOWN


def for_campaign(campaign: Campaign) -> WorkingCalendar:
    cal = campaign.calendar
    return WorkingCalendar(holidays=cal.holidays, workdays=cal.workdays)

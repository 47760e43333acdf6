"""Working days in China: ``chinesecalendar`` plus a campaign's own holidays and make-up workdays.

``chinesecalendar`` knows 2004–2026 only. For any other year the campaign must list its holidays (and
make-up workdays), or record the explicit choice ``[calendar] weekdays_only = true`` (Monday–Friday);
a year neither knows raises :class:`CalendarUnknown` instead of guessing. :func:`require_known_year`
is what creating and opening a campaign call; :func:`describe` is the line ``campaign show``, ``tick``,
``serve`` and the dashboard print ("which calendar is in force").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING

import chinese_calendar

from workflow.errors import CalendarUnknown

if TYPE_CHECKING:
    from workflow.campaign import Campaign


class WorkingCalendar:
    """Answers ``is_working_day``; campaign overrides win over the library's data."""

    def __init__(self, *, holidays: Iterable[dt.date] = (), workdays: Iterable[dt.date] = (),
                 weekdays_only: bool = False) -> None:
        self.holidays = frozenset(holidays)
        self.workdays = frozenset(workdays)
        self.weekdays_only = weekdays_only
        self._listed_years = {d.year for d in self.holidays | self.workdays}

    def knows(self, year: int) -> bool:
        return year in self._listed_years or _library_knows(year) or self.weekdays_only

    def is_working_day(self, day: dt.date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        if _library_knows(day.year):
            return _library_workday(day)
        if day.year in self._listed_years or self.weekdays_only:
            return day.weekday() < 5
        raise CalendarUnknown(unknown_year_message(day.year))

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


@lru_cache(maxsize=4096)  # the State Council's schedule is fixed data: a date's answer never changes
def _library_workday(day: dt.date) -> bool:
    return bool(chinese_calendar.is_workday(day))


def _library_knows(year: int) -> bool:
    return 2004 <= year <= _LAST_KNOWN


def library_knows(year: int) -> bool:
    """Whether ``chinesecalendar`` carries the State Council's schedule of ``year``."""
    return _library_knows(year)


def for_campaign(campaign: Campaign) -> WorkingCalendar:
    cal = campaign.calendar
    return WorkingCalendar(holidays=cal.holidays, workdays=cal.workdays, weekdays_only=cal.weekdays_only)


def unknown_year_message(year: int) -> str:
    return (
        f"工作日历不包含 {year} 年（chinesecalendar 只覆盖 2004–{_LAST_KNOWN} 年，国务院办公厅一般在上一年"
        f"10–12 月公布次年安排），系统不会自行推测。请在活动文件中加入 [calendar] 一节，列出 {year} 年的"
        f"节假日和调休上班日，例如：\n"
        f"  [calendar]\n"
        f"  holidays = [{year}-01-01, {year}-10-01]   # 放假的日期\n"
        f"  workdays = [{year}-02-20]               # 调休上班的周末\n"
        f"或明确选择只按周一至周五计算（不考虑节假日，须经确认）：\n"
        f"  [calendar]\n"
        f"  weekdays_only = true"
    )


def require_known_year(campaign: Campaign) -> None:
    """Refuse a campaign whose year neither ``chinesecalendar`` nor its ``[calendar]`` covers.

    A year the library does not know needs holidays listed *in that year* or ``weekdays_only = true``;
    overrides of another year (carried from last year's file) do not count."""
    year = campaign.year
    if _library_knows(year) or campaign.calendar.weekdays_only:
        return
    if any(d.year == year for d in campaign.calendar.holidays):
        return
    raise CalendarUnknown(f"活动 {campaign.code}：" + unknown_year_message(year))


def describe(campaign: Campaign, *, confirmed: tuple[str, dt.datetime] | None = None) -> str:
    """Which calendar is in force for the campaign's year, in one Chinese line."""
    year = campaign.year
    cal = campaign.calendar
    listed = [d for d in (*cal.holidays, *cal.workdays) if d.year == year]
    if _library_knows(year):
        text = f"工作日历：国务院办公厅 {year} 年安排（chinesecalendar）"
        if listed:
            text += f"，另有活动配置的调整（{len(listed)} 天）"
        return text
    if any(d.year == year for d in cal.holidays):
        return f"工作日历：活动配置的 {year} 年节假日与调休（{len(listed)} 天）"
    if cal.weekdays_only:
        if confirmed is not None:
            who, when = confirmed
            local = when.astimezone(campaign.tz)
            return f"工作日历：仅按周一至周五（经 {who} 于 {local:%Y-%m-%d %H:%M} 确认）"
        return "工作日历：仅按周一至周五（活动配置 weekdays_only = true）"
    return f"工作日历：{year} 年未知（chinesecalendar 只覆盖到 {_LAST_KNOWN} 年，活动配置也未列出）——提醒与公示期无法计算"

"""The hot path's stored times (workflow/repository.py): an event's stored ``at`` is derived from its ISO
text instead of converting the time twice, and "time cannot go backwards" compares SQLite's fixed-width
text directly. Both must agree with the plain conversions for any instant, and a stored value of another
shape (written by older code or by hand) must still be compared as a time, never as text."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from workflow.audit import iso
from workflow.repository import _Sql

SQLITE, PG = _Sql("sqlite"), _Sql("postgresql")
ZONES = st.sampled_from([dt.UTC, ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York"),
                         dt.timezone(dt.timedelta(hours=-9, minutes=-30))])
TIMES = st.datetimes(min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(9998, 12, 30), timezones=ZONES)


@settings(max_examples=300, deadline=None)
@given(TIMES)
def test_the_stored_text_is_what_ts_writes(t: dt.datetime) -> None:
    assert SQLITE.stored_at(t, iso(t)) == SQLITE.ts(t)
    assert PG.stored_at(t, iso(t)) is t


def _other_shapes(t: dt.datetime) -> list[str]:
    u = t.astimezone(dt.UTC).replace(tzinfo=None)
    return [u.isoformat(" "), u.isoformat("T", "microseconds"), u.isoformat(" ", "seconds"),
            t.isoformat(" ", "microseconds")]


@settings(max_examples=300, deadline=None)
@given(TIMES, TIMES)
def test_before_agrees_with_comparing_the_times(a: dt.datetime, b: dt.datetime) -> None:
    want = a < b
    stored_a = SQLITE.stored_at(a, iso(a))
    assert SQLITE.before(a, stored_a, SQLITE.ts(b)) is want
    for shape in _other_shapes(b):  # parsed, not compared as text
        assert SQLITE.before(a, stored_a, shape) is (a < SQLITE.read_ts(shape))  # type: ignore[operator]
    assert PG.before(a, a, b) is want


def test_the_same_instant_is_not_before_itself() -> None:
    t = dt.datetime(2026, 4, 18, 23, 59, 59, 999999, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert not SQLITE.before(t, SQLITE.stored_at(t, iso(t)), SQLITE.ts(t))
    later = t + dt.timedelta(microseconds=1)
    assert SQLITE.before(t, SQLITE.stored_at(t, iso(t)), SQLITE.ts(later))
    assert not SQLITE.before(later, SQLITE.stored_at(later, iso(later)), SQLITE.ts(t))


@settings(max_examples=500, deadline=None)
@given(st.one_of(TIMES, TIMES.map(lambda t: t.replace(microsecond=0))))
def test_iso_is_the_hashed_text_it_always_was(t: dt.datetime) -> None:
    # the events' "at" is part of the hashed canonical bytes: the same text as the original definition
    assert iso(t) == t.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")

"""Pure deadline logic: which reminders and escalations are due for a deadline at ``now``.

A campaign's ``[reminders]`` policy gives a ladder of *rungs* for every stage deadline ``D``:

    before-7, before-3, before-1     reminders to the people who owe the work (offsets_days)
    after-1                          the general-branch secretary is told (escalation[0])
    after-3                          the organisation department and committee, with a 督办令
    after-10, after-17, …            weekly repeats of the last rung while the case stays overdue

Each rung is sent at ``send_hour`` (campaign time zone) on its day. With ``skip_non_working_days`` a
reminder that falls on a weekend or holiday moves to the working day *before* (it must still arrive
before the deadline), an escalation to the working day *after*.

The sweep remembers up to when it has looked (its watermark ``prev``). :func:`decide` returns, for one
case, the rungs whose send time fell in ``(prev, now]``: only the latest is sent (after downtime it is
the one that still makes sense), the others are recorded as skipped — never a burst of missed ones. A
reminder is stale once its deadline day is over. :func:`deadline_windows` turns ``(prev, now]`` into
ranges of deadline dates, so the sweep queries the ``(campaign_id, deadline)`` index for exactly the
cases that have something due, never all branches.

Nothing here reads the clock or the database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from workflow.calendar import for_campaign
from workflow.campaign import Campaign, Reminders

REMINDER = "reminder"
ESCALATION = "escalation"
ESCALATION_UP = "escalation_up"  # to the parent committee's organisation department (issue 12)
# How far a rung can move when it skips non-working days (the longest Chinese holiday is 8 days).
SHIFT_MARGIN_DAYS = 12


@dataclass(frozen=True, kw_only=True)
class Rung:
    """One step of the ladder; ``days`` is signed: -7 is a week before the deadline, +3 three days after."""

    id: str
    kind: str
    days: int
    to: tuple[str, ...] = ()
    supervision_order: bool = False
    order: int = 0  # position in the ladder; breaks ties between rungs moved onto the same day


def ladder(policy: Reminders) -> list[Rung]:
    """The fixed rungs (reminders, then escalations), without the weekly repeats."""
    rungs = [Rung(id=f"before-{d}", kind=REMINDER, days=-d, order=i) for i, d in enumerate(policy.offsets_days)]
    base = len(rungs)
    seen: set[int] = set()
    for i, esc in enumerate(sorted(policy.escalation, key=lambda e: e.after_days)):
        if esc.after_days in seen:
            continue
        seen.add(esc.after_days)
        rungs.append(Rung(id=f"after-{esc.after_days}", kind=ESCALATION, days=esc.after_days, to=tuple(esc.to),
                          supervision_order=esc.supervision_order, order=base + i))
    return rungs


def weekly(policy: Reminders, k: int) -> Rung | None:
    """The k-th weekly repeat (k ≥ 1) of the last escalation rung, or None when the policy has none."""
    if not policy.repeat_weekly or not policy.escalation:
        return None
    last = max(policy.escalation, key=lambda e: e.after_days)
    days = last.after_days + 7 * k
    return Rung(id=f"after-{days}", kind=ESCALATION, days=days, to=tuple(last.to), supervision_order=False,
                order=1000 + k)


@dataclass(frozen=True, kw_only=True)
class Decision:
    """What one case needs now: the rung to send (or None) and the stale rungs to record as skipped."""

    send: Rung | None
    skipped: tuple[Rung, ...]
    supervision_order: bool = False
    to: tuple[str, ...] = ()  # escalation recipients, with those of rungs the calendar moved onto the same slot
    parent: Rung | None = None  # the report up the tree ([escalation] parent_after_days) due in the window


class Schedule:
    """A campaign's reminder policy placed on its calendar and time zone."""

    def __init__(self, campaign: Campaign) -> None:
        self.policy = campaign.reminders
        self.tz = ZoneInfo(campaign.timezone)
        self.calendar = for_campaign(campaign)
        self.rungs = ladder(self.policy)
        self._working: dict[dt.date, bool] = {}
        # its own track beside the ladder: sent once per deadline, whatever the ladder sent that day
        up = campaign.escalation.parent_after_days
        self.up = (Rung(id=f"parent-{up}", kind=ESCALATION_UP, days=up, to=("parent_org_department",), order=2000)
                   if up else None)

    # --- calendar -------------------------------------------------------------------------------
    def is_working_day(self, day: dt.date) -> bool:
        hit = self._working.get(day)
        if hit is None:
            # A year nobody listed raises CalendarUnknown: never a silent Monday–Friday guess (the sweep
            # skips such a campaign with a message, scheduler/sweep.py).
            hit = self._working[day] = self.calendar.is_working_day(day)
        return hit

    def send_day(self, deadline: dt.date, rung: Rung) -> dt.date:
        day = deadline + dt.timedelta(days=rung.days)
        if not self.policy.skip_non_working_days:
            return day
        step = dt.timedelta(days=-1 if rung.kind == REMINDER else 1)
        for _ in range(40):
            if self.is_working_day(day):
                return day
            day += step
        return day

    def send_at(self, deadline: dt.date, rung: Rung) -> dt.datetime:
        return dt.datetime.combine(self.send_day(deadline, rung), dt.time(self.policy.send_hour), tzinfo=self.tz)

    def local_date(self, t: dt.datetime) -> dt.date:
        return t.astimezone(self.tz).date()

    # --- rungs of one deadline --------------------------------------------------------------------
    def rungs_until(self, deadline: dt.date, now: dt.datetime) -> list[Rung]:
        """Every rung of ``deadline`` (weekly repeats included) whose send time is at or before ``now``."""
        out = [r for r in self.rungs if self.send_at(deadline, r) <= now]
        k = 1
        while (w := weekly(self.policy, k)) is not None and self.send_at(deadline, w) <= now:
            out.append(w)
            k += 1
        return sorted(out, key=lambda r: (self.send_at(deadline, r), r.order))

    def decide(self, deadline: dt.date, prev: dt.datetime, now: dt.datetime) -> Decision | None:
        """The case's rungs that became due in ``(prev, now]``: the latest is sent, older ones skipped; the
        report to the parent committee (``parent``) when its time fell in the window too."""
        main = self._decide(deadline, prev, now)
        up = self.up if self.up is not None and prev < self.send_at(deadline, self.up) <= now else None
        if up is None:
            return main
        if main is None:
            return Decision(send=None, skipped=(), parent=up)
        return Decision(send=main.send, skipped=main.skipped, supervision_order=main.supervision_order, to=main.to,
                        parent=up)

    def _decide(self, deadline: dt.date, prev: dt.datetime, now: dt.datetime) -> Decision | None:
        newly = [r for r in self.rungs_in(deadline, prev, now)]
        if not newly:
            return None
        latest = newly[-1]
        stale = newly[:-1]
        if latest.kind == REMINDER and self.local_date(now) > deadline:
            return Decision(send=None, skipped=tuple(newly))
        supervision = latest.kind == ESCALATION and any(r.supervision_order for r in newly)
        to: list[str] = []
        if latest.kind == ESCALATION:
            # Rungs a weekend moved onto the latest's slot are not stale: their people are told in the same mail.
            slot = self.send_at(deadline, latest)
            for r in newly:
                if r.kind == ESCALATION and (r is latest or self.send_at(deadline, r) == slot):
                    to.extend(t for t in r.to if t not in to)
        return Decision(send=latest, skipped=tuple(stale), supervision_order=supervision, to=tuple(to))

    def rungs_in(self, deadline: dt.date, prev: dt.datetime, now: dt.datetime) -> list[Rung]:
        out = []
        for r in self.rungs:
            t = self.send_at(deadline, r)
            if prev < t <= now:
                out.append(r)
        # weekly repeats: only those whose day can fall in the window
        if self.policy.repeat_weekly and self.policy.escalation:
            last = max(e.after_days for e in self.policy.escalation)
            first_day = self.local_date(prev) - dt.timedelta(days=SHIFT_MARGIN_DAYS)
            k_from = max(1, ((first_day - deadline).days - last) // 7)
            k = k_from
            while True:
                w = weekly(self.policy, k)
                assert w is not None
                t = self.send_at(deadline, w)
                if t > now:
                    break
                if t > prev:
                    out.append(w)
                k += 1
        return sorted(out, key=lambda r: (self.send_at(deadline, r), r.order))

    # --- which deadlines have something due ---------------------------------------------------------
    def deadline_windows(self, prev: dt.datetime, now: dt.datetime,
                         min_deadline: dt.date | None) -> list[tuple[dt.date, dt.date]]:
        """Ranges of deadline dates having at least one rung with send time in ``(prev, now]``.

        Send times grow with the deadline, so each rung contributes one range; the ranges are merged.
        ``min_deadline`` (the earliest deadline in the campaign) bounds the weekly repeats.
        """
        if now <= prev:
            return []
        lo_day = self.local_date(prev) - dt.timedelta(days=SHIFT_MARGIN_DAYS)
        hi_day = self.local_date(now) + dt.timedelta(days=SHIFT_MARGIN_DAYS)
        dates: set[dt.date] = set()
        rungs = list(self.rungs) + ([self.up] if self.up is not None else [])
        if min_deadline is not None:
            k = 1
            while (w := weekly(self.policy, k)) is not None and self.local_date(now) - dt.timedelta(
                    days=w.days) + dt.timedelta(days=SHIFT_MARGIN_DAYS) >= min_deadline:
                if self.local_date(prev) - dt.timedelta(days=w.days + SHIFT_MARGIN_DAYS) <= self.local_date(now):
                    rungs.append(w)
                k += 1
        for r in rungs:
            d = lo_day - dt.timedelta(days=r.days)
            end = hi_day - dt.timedelta(days=r.days)
            if min_deadline is not None and d < min_deadline:
                d = min_deadline
            while d <= end:
                t = self.send_at(d, r)
                if prev < t <= now:
                    dates.add(d)
                d += dt.timedelta(days=1)
        return merge_dates(dates)

    # --- monthly progress digest (月调度) ----------------------------------------------------------
    def monthly_due(self, prev: dt.datetime, now: dt.datetime) -> tuple[str, dt.datetime] | None:
        """The latest month whose digest time fell in ``(prev, now]``, as ("YYYY-MM", send time)."""
        if now <= prev:
            return None
        found: tuple[str, dt.datetime] | None = None
        start = self.local_date(prev).replace(day=1)
        end = self.local_date(now)
        month = start
        while month <= end:
            day = month.replace(day=self.policy.monthly_digest_day)
            if self.policy.skip_non_working_days:
                for _ in range(40):
                    if self.is_working_day(day):
                        break
                    day += dt.timedelta(days=1)
            t = dt.datetime.combine(day, dt.time(self.policy.send_hour), tzinfo=self.tz)
            if prev < t <= now:
                found = (f"{month:%Y-%m}", t)
            month = (month + dt.timedelta(days=32)).replace(day=1)
        return found


def merge_dates(dates: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    out: list[tuple[dt.date, dt.date]] = []
    for d in sorted(dates):
        if out and (d - out[-1][1]).days <= 1:
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


def dedup_key(campaign: str, branch: str, stage: str, deadline: dt.date | str, rung: str) -> str:
    """The outbox's unique key: (campaign, branch, stage, deadline, rung)."""
    return f"{campaign}/{branch}/{stage}/{deadline}/{rung}"

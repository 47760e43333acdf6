"""Reports: the forms the organisation department files, charts of where the campaign stands, and the
event export for auditors.

    render(session, name, fmt, general_branch=None, at=None, campaign=None, now=None) -> Rendered

``Rendered.body`` is an iterator of bytes that reads the database lazily: consume it while the session
is open (the CLI writes it inside its transaction; an HTTP handler streams it before closing the
session, or calls :meth:`Rendered.read`). See docs/reports.md.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from reports.forms import FORMS, Form, FormContext
from reports.snapshots import scope_of, snapshots
from reports.writers import MEDIA_TYPES, WRITERS
from workflow.errors import InvalidInput
from workflow.repository import campaign_of, get_campaign_row

FORMATS = tuple(WRITERS)

__all__ = ["FORMATS", "FORMS", "Rendered", "form_names", "render"]


@dataclass(kw_only=True)
class Rendered:
    """A rendered form: a file name (Chinese), an ASCII fallback, the media type and the bytes, streamed."""

    filename: str
    ascii_filename: str
    media_type: str
    body: Iterator[bytes]

    def __iter__(self) -> Iterator[Any]:
        """``filename, media_type, body = reports.render(...)`` also works."""
        return iter((self.filename, self.media_type, self.body))

    def content_disposition(self) -> str:
        """The ``Content-Disposition`` header value for a download (RFC 6266 / 5987: Chinese name + fallback).

        Safe by construction: the fallback keeps only ``[A-Za-z0-9_.-]`` and the UTF-8 name is
        percent-encoded whole, so no quote, semicolon or line break can end the parameter."""
        quoted = urllib.parse.quote(self.filename, safe="")
        return f"attachment; filename=\"{safe_name(self.ascii_filename)}\"; filename*=UTF-8''{quoted}"

    def read(self) -> bytes:
        return b"".join(self.body)

    def write_to(self, path: str | Path) -> int:
        n = 0
        with open(path, "wb") as f:
            for chunk in self.body:
                f.write(chunk)
                n += len(chunk)
        return n


def safe_name(part: str) -> str:
    """A file-name part made only of letters, digits (any script), ``-``, ``_`` and ``.``; never a path."""
    cleaned = re.sub(r"[^\w.-]", "_", part, flags=re.UNICODE).lstrip(".")
    return cleaned[:120] or "_"


def form_names() -> dict[str, str]:
    """name → 中文 label of every form."""
    return {name: f.label for name, f in FORMS.items()}


def _choices(d: dict[str, str] | tuple[str, ...]) -> str:
    if isinstance(d, dict):
        return "、".join(f"{k}（{v}）" for k, v in d.items())
    return "、".join(d)


def render(session: Session, name: str, fmt: str, *, general_branch: str | None = None,
           at: dt.datetime | None = None, campaign: str | None = None, now: dt.datetime | None = None) -> Rendered:
    """Render form ``name`` as ``fmt`` (xlsx, csv or html) for the campaign (default: the newest).

    ``general_branch`` limits it to one general branch (a code); ``at`` gives the form as it stood at
    that time, replayed from the event log. ``now`` is the time the data is as of when ``at`` is not
    given (read once at the edge). Bad input raises :class:`InvalidInput` / :class:`NotFound` before
    anything is read.
    """
    form_cls = FORMS.get(name)
    if form_cls is None:
        raise InvalidInput(f"没有名为 {name!r} 的报表；可用：{_choices(form_names())}")
    if fmt not in WRITERS:
        raise InvalidInput(f"不支持的格式 {fmt!r}；可用：{_choices(FORMATS)}")
    if at is not None and at.tzinfo is None:
        raise InvalidInput("--at 的时间须带时区")
    if now is None:  # callers should pass the time they read at their edge; this is the fallback
        now = dt.datetime.now(dt.UTC)
    if general_branch and not form_cls.per_branch:
        raise InvalidInput(f"“{form_cls.label}”是全年任务清单，不按党总支区分：请去掉 --general-branch")
    camp_row = get_campaign_row(session, campaign)
    scope = scope_of(session, general_branch)
    as_of = at if at is not None else now
    form: Form = form_cls(FormContext(campaign=campaign_of(camp_row), scope=scope, as_of=as_of,
                                      replayed=at is not None))
    rows = form.rows(
        snapshots(session, camp_row, general_branch=general_branch, at=at) if form_cls.per_branch else iter(())
    )
    stamp = form.ctx.local_as_of.strftime("%Y%m%d-%H%M")
    part = f"-{safe_name(general_branch)}" if general_branch else ""
    return Rendered(
        filename=safe_name(f"{form_cls.label}{part}-{stamp}.{fmt}"),
        ascii_filename=safe_name(f"{name}{part}-{stamp}.{fmt}".encode("ascii", "replace").decode()),
        media_type=MEDIA_TYPES[fmt],
        body=WRITERS[fmt](form, rows),
    )

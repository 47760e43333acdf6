"""Rendering, pure: a template family and a context → subject, plain text and HTML → an e-mail message.

Templates live in ``templates/mail/``: ``<family>.subject.j2``, ``<family>.txt.j2`` and
``<family>.html.j2`` for the families ``notices`` (reminders and escalations, one or many items: a
digest per recipient), ``monthly`` (月调度) and ``dead_report``. Jinja2 with ``StrictUndefined`` (a
missing variable is an error, never an empty hole in a mail) and autoescape for HTML.

Every message carries the dedup keys of what it delivers, in ``X-Branchflow-Dedup-Key`` headers and in
a ``Message-ID`` derived from them and the recipient: if a crash between sending and marking makes the
dispatcher send again, the copy has the same Message-ID and keys, so the receiver can tell.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from workflow.resources import template_dir

TEMPLATES = template_dir("mail")
FAMILIES = ("notices", "monthly", "dead_report", "ballot")


@lru_cache(maxsize=4)
def environment(root: str = str(TEMPLATES)) -> Environment:
    return Environment(
        loader=FileSystemLoader(root),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@dataclass(frozen=True, kw_only=True)
class Rendered:
    subject: str
    text: str
    html: str


def render(family: str, context: dict[str, Any]) -> Rendered:
    """Render a family's three templates; raises ``jinja2.UndefinedError`` when the context lacks a variable."""
    if family not in FAMILIES:
        raise ValueError(f"unknown mail template family {family!r}")
    env = environment()
    subject = " ".join(env.get_template(f"{family}.subject.j2").render(context).split())
    ctx = {**context, "subject": subject}
    text = env.get_template(f"{family}.txt.j2").render(ctx)
    html = env.get_template(f"{family}.html.j2").render(ctx)
    return Rendered(subject=subject, text=text, html=html)


def notices_context(recipient_name: str, items: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    reminders = sum(1 for i in items if i["kind"] == "reminder")
    return {
        "recipient_name": recipient_name or "",
        "items": items,
        "keys": keys,
        "campaign": items[0].get("campaign", "") if items else "",
        "reminders": reminders,
        "escalations": len(items) - reminders,
        "orders": sum(1 for i in items if i.get("supervision_order")),
    }


def message_id(recipient: str, keys: list[str], sender: str) -> str:
    digest = hashlib.sha256(("\n".join([recipient, *sorted(keys)])).encode("utf-8")).hexdigest()[:32]
    domain = parseaddr(sender)[1].rpartition("@")[2] or "branchflow.local"
    return f"<{digest}@{domain}>"


def build_message(*, sender: str, recipient: str, recipient_name: str, rendered: Rendered, keys: list[str],
                  now: dt.datetime) -> Message:
    """A multipart/alternative message (plain text and HTML, UTF-8); Chinese headers as RFC 2047 words.

    Built with the classic ``email.mime`` classes: the header-registry API of ``email.policy.SMTP``
    re-parses every header and made building the message cost more than sending it.
    """
    msg = MIMEMultipart("alternative")
    sender_name, sender_addr = parseaddr(sender)
    msg["From"] = formataddr((sender_name, sender_addr), charset="utf-8")
    msg["To"] = formataddr((recipient_name, recipient), charset="utf-8") if recipient_name else recipient
    msg["Subject"] = Header(rendered.subject, "utf-8", header_name="Subject")  # type: ignore[assignment]
    msg["Date"] = format_datetime(now.astimezone(dt.UTC))
    msg["Message-ID"] = message_id(recipient, keys, sender)
    for k in keys:
        msg["X-Branchflow-Dedup-Key"] = k if k.isascii() else Header(k, "utf-8")  # type: ignore[assignment]
    msg.attach(MIMEText(rendered.text, "plain", "utf-8"))
    msg.attach(MIMEText(rendered.html, "html", "utf-8"))
    return msg

"""Rendering, pure: a template family and a context → subject, plain text and HTML → an e-mail message.

Templates live in ``templates/mail/``: ``<family>.subject.j2``, ``<family>.txt.j2`` and
``<family>.html.j2`` for the families ``notices`` (reminders and escalations, one or many items: a
digest per recipient), ``monthly`` (月调度) and ``dead_report``. Jinja2 with ``StrictUndefined`` (a
missing variable is an error, never an empty hole in a mail) and autoescape for HTML.

Every message carries the dedup keys of what it delivers, in ``X-Branchflow-Dedup-Key`` headers and in
a ``Message-ID`` derived from them and the recipient: if a crash between sending and marking makes the
dispatcher send again, the copy has the same Message-ID and keys, so the receiver can tell.

Messages are written straight to bytes by :mod:`notifications.wire` (display names, subjects and
non-ASCII keys only as RFC 2047 encoded words, addresses and Message-IDs only after a strict check).
Names and subjects are data: :func:`header_text` turns control, line-break and bidi/format characters
into spaces first, so a name planted with ``"\\nBcc: …"`` can neither add a header nor break the
message. :func:`alert_rendered` builds the organisation department's alert about held messages in code,
with no template, so it goes out even when the templates are what fails.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import parseaddr
from functools import lru_cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from notifications.wire import (
    ADDRESS_CHARS,
    DOMAIN,
    UNSAFE,
    BadAddress,
    Mail,
    check_addr_spec,
    compose,
    header_text,
)
from workflow.resources import template_dir

__all__ = ["ADDRESS_CHARS", "UNSAFE", "BadAddress", "Mail", "Rendered", "address", "alert_rendered", "build_message",
           "dead_report_plain", "header_text", "message_id", "notices_context", "render"]

TEMPLATES = template_dir("mail")
FAMILIES: tuple[str, ...] = ("notices", "monthly", "dead_report", "ballot")
FAMILIES += ("checkpoint",)  # signed checkpoints to the auditors (issue 11)
FAMILIES += ("escalation_up",)  # a sub-committee's overdue branch, to the parent committee (issue 12)
FAMILIES += ("objection_receipt",)  # the objector's receipt code (issue 16, notifications/receipts.py)


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
    env = environment(str(TEMPLATES))  # read at call time: an operator (or a test) may point it elsewhere
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
    """Derived from the recipient and the sorted dedup keys only: a message rebuilt after a crash has the same."""
    digest = hashlib.sha256(("\n".join([recipient, *sorted(keys)])).encode("utf-8")).hexdigest()[:32]
    domain = parseaddr(sender)[1].rpartition("@")[2] or "branchflow.local"
    domain = domain if DOMAIN.fullmatch(domain) else "branchflow.local"
    return f"<{digest}@{domain}>"


def address(addr: str, name: str = "") -> Address:
    """A structured address; raises :class:`BadAddress` for anything that is not a plain ``local@domain``."""
    addr = check_addr_spec(addr)
    try:
        return Address(display_name=header_text(name), addr_spec=addr)
    except (ValueError, IndexError) as exc:  # the header parser's own refusals
        raise BadAddress(f"收件地址无效：{addr!r}") from exc


def build_message(*, sender: str, recipient: str, recipient_name: str, rendered: Rendered, keys: list[str],
                  now: dt.datetime, mid: str | None = None) -> Mail:
    """A UTF-8 message (plain text, and HTML as an alternative when there is some) for one recipient, as bytes.

    ``now`` is the Date; ``mid`` the Message-ID planned for it (default: :func:`message_id`). Raises
    :class:`BadAddress` when the recipient's address is unusable, ``ValueError`` for a sender that is.
    Written by :func:`notifications.wire.compose` (every display name and the subject as encoded words).
    """
    addr = check_addr_spec(recipient)
    return compose(sender=sender, recipient=addr, recipient_name=recipient_name, subject=rendered.subject,
                   text=rendered.text, html=rendered.html, keys=keys, date=now,
                   message_id=mid or message_id(addr, keys, sender))


def alert_rendered(recipient_name: str, items: list[dict[str, Any]], keys: list[str]) -> Rendered:
    """The alert about held messages, written in code (no template): it must not depend on what failed."""
    lines = [f"{recipient_name or '组织部'}同志：您好！", "",
             (f"以下 {len(items)} 封通知邮件因系统自身的问题（邮件模板或配置错误）未能生成或发送，已暂扣（held），"
              "系统会自动重试；请通知系统管理员尽快修复（运行 branchflow outbox --status held 查看详情）："), ""]
    for n, it in enumerate(items, 1):
        lines.append(f"{n}. 收件人：{it.get('recipient', '')}")
        lines.append(f"   通知：{it.get('notice', '')}")
        lines.append(f"   原因：{it.get('error', '')}")
    lines += ["", "此邮件由 branchflow 自动发送，请勿直接回复。", "提醒编号：" + ", ".join(keys)]
    return Rendered(subject=f"【系统告警】{len(items)} 封通知邮件未能发送（已暂扣，将自动重试）",
                    text="\n".join(lines) + "\n", html="")


def dead_report_plain(recipient_name: str, items: list[dict[str, Any]], keys: list[str]) -> Rendered:
    """The dead-letter report written in code: used when its own template cannot render."""
    lines = [f"{recipient_name or '组织部'}同志：您好！", "",
             "以下通知邮件无法送达（收件地址无效或被对方服务器拒绝），系统不会再重试，请核实收件人邮箱后在系统中更正：", ""]
    for n, it in enumerate(items, 1):
        lines += [f"{n}. 收件人：{it.get('recipient', '')}", f"   通知：{it.get('subject', '')}",
                  f"   原因：{it.get('error', '')}"]
    lines += ["", "此邮件由 branchflow 自动发送，请勿直接回复。", "提醒编号：" + ", ".join(keys)]
    return Rendered(subject=f"【投递失败】{len(items)} 封通知邮件无法送达", text="\n".join(lines) + "\n", html="")

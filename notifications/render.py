"""Rendering, pure: a template family and a context → subject, plain text and HTML → an e-mail message.

Templates live in ``templates/mail/``: ``<family>.subject.j2``, ``<family>.txt.j2`` and
``<family>.html.j2`` for the families ``notices`` (reminders and escalations, one or many items: a
digest per recipient), ``monthly`` (月调度) and ``dead_report``. Jinja2 with ``StrictUndefined`` (a
missing variable is an error, never an empty hole in a mail) and autoescape for HTML.

Every message carries the dedup keys of what it delivers, in ``X-Branchflow-Dedup-Key`` headers and in
a ``Message-ID`` derived from them and the recipient: if a crash between sending and marking makes the
dispatcher send again, the copy has the same Message-ID and keys, so the receiver can tell.

Headers are built only through the email package's structured API (:class:`~email.message.EmailMessage`
with :class:`~email.headerregistry.Address`; display names and subjects encoded as RFC 2047 words).
Names and subjects are data: :func:`header_text` turns control, line-break and bidi/format characters
into spaces first, so a name planted with ``"\\nBcc: …"`` can neither add a header nor break the
message. :func:`alert_rendered` builds the organisation department's alert about held messages in code,
with no template, so it goes out even when the templates are what fails.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.mime.text import MIMEText
from email.utils import parseaddr
from functools import lru_cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from workflow.resources import template_dir

TEMPLATES = template_dir("mail")
FAMILIES: tuple[str, ...] = ("notices", "monthly", "dead_report", "ballot")
FAMILIES += ("checkpoint",)  # signed checkpoints to the auditors (issue 11)
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
    domain = domain if ADDRESS_CHARS.fullmatch(domain) else "branchflow.local"
    return f"<{digest}@{domain}>"


# C0/C1 controls, line and paragraph separators, zero-width and bidirectional format characters
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
ADDRESS_CHARS = re.compile(r"[!-~]+")  # printable ASCII, no space
POLICY = policy.default  # "\n" inside base64 bodies, as before; aiosmtplib writes CRLF on the wire


class BadAddress(ValueError):
    """收件地址无效（含空白、控制字符或格式不对），无法投递。"""


def header_text(value: str) -> str:
    """One line of text safe inside a header: unsafe characters become spaces, runs of whitespace one space."""
    return " ".join(UNSAFE.sub(" ", value).split())


def address(addr: str, name: str = "") -> Address:
    """A structured address; raises :class:`BadAddress` for anything that is not a plain ``local@domain``."""
    addr = addr.strip()
    local, at, domain = addr.rpartition("@")
    if not at or not local or "." not in domain or not ADDRESS_CHARS.fullmatch(addr) or any(c in addr for c in '<>"(),;:\\[]'):
        raise BadAddress(f"收件地址无效：{addr!r}")
    try:
        return Address(display_name=header_text(name), addr_spec=addr)
    except (ValueError, IndexError) as exc:  # the header parser's own refusals
        raise BadAddress(f"收件地址无效：{addr!r}") from exc


@lru_cache(maxsize=8)
def _from_header(sender: str) -> Any:
    """The From header, parsed once per sender (header objects are immutable and shared by messages)."""
    name, addr = parseaddr(sender)
    return POLICY.header_factory("From", Address(display_name=header_text(name), addr_spec=addr))


@lru_cache(maxsize=256)
def _header(name: str, value: Any) -> Any:
    """A parsed header, shared by the messages of a round with the same value (a digest's Date, a subject)."""
    return POLICY.header_factory(name, value)


def build_message(*, sender: str, recipient: str, recipient_name: str, rendered: Rendered, keys: list[str],
                  now: dt.datetime, mid: str | None = None) -> EmailMessage:
    """A UTF-8 message (plain text, and HTML as an alternative when there is some) for one recipient.

    ``now`` is the Date; ``mid`` the Message-ID planned for it (default: :func:`message_id`). Raises
    :class:`BadAddress` when the recipient's address is unusable, ``ValueError`` for a sender that is.
    """
    to = address(recipient, recipient_name)
    msg = EmailMessage(policy=POLICY)
    msg["From"] = _from_header(sender)
    msg["To"] = to
    msg["Subject"] = _header("Subject", header_text(rendered.subject))
    msg["Date"] = _header("Date", now.astimezone(dt.UTC))
    msg["Message-ID"] = mid or message_id(to.addr_spec, keys, sender)
    for k in keys:
        msg["X-Branchflow-Dedup-Key"] = header_text(k)
    # The bodies are classic MIMEText parts (base64, UTF-8): their few fixed headers are written as they
    # are, while the structured headers above are parsed and folded by the policy, which costs far more.
    text = MIMEText(rendered.text, "plain", "utf-8")
    if rendered.html:
        # a boundary derived from the Message-ID (base64 bodies never contain "=_"): rebuilt, the same bytes
        boundary = "=_bf_" + hashlib.sha256(str(msg["Message-ID"]).encode()).hexdigest()[:24]
        msg["MIME-Version"] = "1.0"
        msg["Content-Type"] = "multipart/alternative"
        msg.set_param("boundary", boundary)
        msg.set_payload([text, MIMEText(rendered.html, "html", "utf-8")])
    else:
        msg["MIME-Version"] = "1.0"
        for name in ("Content-Type", "Content-Transfer-Encoding"):
            msg[name] = str(text[name])
        msg.set_payload(text.get_payload())
    return msg


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

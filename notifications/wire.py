"""A message straight to the bytes that go on the wire, built once and never parsed again.

:func:`compose` writes a UTF-8 message (plain text, and HTML as an alternative when there is some)
directly as bytes. Every header is assembled from parts that cannot carry a line break or a header of
their own:

* text a person typed — display names, the subject, a dedup key that is not plain ASCII — only ever
  as RFC 2047 ``B`` encoded words (``=?utf-8?b?…?=``: base64 letters, nothing else), after
  :func:`header_text` has turned control, line-break and bidi/format characters into spaces; a name
  of plain ASCII letters, digits and spaces (no ``=?``) is written as it is;
* addresses only after :func:`check_addr_spec` accepted them (printable ASCII, one ``@``, no space,
  quote, bracket, comma or semicolon), Message-IDs only when they match :data:`MESSAGE_ID`;
* the Date by :func:`email.utils.format_datetime`, the bodies base64 (76-character lines).

Folding happens only between encoded words (and before an address), so a reader's parser joins the
words back without a space: what it reads is exactly the name, subject or key. A plain-ASCII dedup key
is written on one line, unfolded (the header line limit is 998; keys are at most 400 characters).

The same inputs give the same bytes (the multipart boundary is derived from the Message-ID), so a
digest rebuilt from its plan after a crash is byte for byte the message sent before.

This replaces building an :class:`email.message.EmailMessage` and letting the email package fold and
serialise it: that took about half of the dispatcher's CPU time (bench/bench_delivery.py). Readers
parse what we write with the standard parser; the tests do so for every header (test_mail_wire.py).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import format_datetime, parseaddr, parsedate_to_datetime
from functools import lru_cache

# C0/C1 controls, line and paragraph separators, zero-width and bidirectional format characters
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
ADDRESS_CHARS = re.compile(r"[!-~]+")  # printable ASCII, no space
PLAIN_NAME = re.compile(r"[A-Za-z0-9 !#$%&'*+/^_`{|}~-]+")  # atext and spaces, without "=" and "?"
PLAIN_TEXT = re.compile(r"[ -~]+")  # printable ASCII and spaces (a subject: "=?" is excluded apart)
DOMAIN = re.compile(r"[A-Za-z0-9.-]+")
MESSAGE_ID = re.compile(r"<[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+>")
KEY_ON_ONE_LINE = 900  # a plain-ASCII key up to this length is written as it is, on one line
WORD_BYTES = 45  # UTF-8 bytes per encoded word: 60 base64 characters, 72 characters a word (RFC 2047: ≤ 75)
LINE = 78  # fold before a part that would make the line longer than this


class BadAddress(ValueError):
    """收件地址无效（含空白、控制字符或格式不对），无法投递。"""


@dataclass(frozen=True, slots=True)
class Mail:
    """One message ready to send: the envelope and the bytes, built once."""

    sender: str  # envelope sender (addr-spec)
    recipient: str  # envelope recipient (addr-spec)
    data: bytes  # the whole message, "\n" line ends (the SMTP client writes CRLF)
    message_id: str
    date: dt.datetime | None = None

    def as_bytes(self) -> bytes:
        return self.data

    @property
    def message(self) -> EmailMessage:
        """The bytes parsed back with the standard parser (for tests and the in-memory transport)."""
        msg = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(msg, EmailMessage)
        return msg

    @classmethod
    def of(cls, msg: Message | Mail) -> Mail:
        """A :class:`Mail` for a message built by other means (an ``EmailMessage`` a caller wrote)."""
        if isinstance(msg, Mail):
            return msg
        to = msg["To"]
        addresses = getattr(to, "addresses", None)
        recipient = str(addresses[0].addr_spec) if addresses else parseaddr(str(to or ""))[1]
        frm = msg["From"]
        senders = getattr(frm, "addresses", None)
        sender = str(senders[0].addr_spec) if senders else parseaddr(str(frm or ""))[1]
        date = parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else None
        return cls(sender=sender, recipient=recipient, data=msg.as_bytes(policy=policy.default),
                   message_id=str(msg["Message-ID"] or ""), date=date)


def header_text(value: str) -> str:
    """One line of text safe inside a header: unsafe characters become spaces, runs of whitespace one space."""
    return " ".join(UNSAFE.sub(" ", value).split())


def check_addr_spec(addr: str) -> str:
    """``addr`` stripped if it is a plain ``local@domain`` of printable ASCII, else :class:`BadAddress`."""
    addr = addr.strip()
    local, at, domain = addr.rpartition("@")
    if (not at or not local or "." not in domain or domain.startswith(".") or domain.endswith(".")
            or not ADDRESS_CHARS.fullmatch(addr) or any(c in addr for c in '<>"(),;:\\[]')):
        raise BadAddress(f"收件地址无效：{addr!r}")
    return addr


def encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 ``B`` encoded words of at most 72 characters, split between characters."""
    data = text.encode("utf-8")
    words: list[str] = []
    i, n = 0, len(data)
    while i < n:
        j = min(i + WORD_BYTES, n)
        while j < n and (data[j] & 0xC0) == 0x80:  # never inside a character
            j -= 1
        words.append("=?utf-8?b?" + base64.b64encode(data[i:j]).decode("ascii") + "?=")
        i = j
    return words


def _fold(name: str, parts: list[str]) -> str:
    """``Name: part part …`` with a line break (and one space) before a part that would pass :data:`LINE`."""
    out = [name, ":"]
    width = len(name) + 1
    for p in parts:
        if width + 1 + len(p) > LINE and width > len(name) + 1:
            out.append("\n ")
            width = 1
        else:
            out.append(" ")
            width += 1
        out.append(p)
        width += len(p)
    out.append("\n")
    return "".join(out)


def _text_parts(text: str) -> list[str]:
    """A subject or a key's words: as they are when plain ASCII (no ``=?``), else encoded words."""
    if PLAIN_TEXT.fullmatch(text) and "=?" not in text and all(len(w) <= 70 for w in text.split(" ")):
        return text.split(" ")
    return encoded_words(text)


@lru_cache(maxsize=4096)
def address_header(name: str, display_name: str, addr: str) -> str:
    """``To:``/``From:`` with one mailbox; ``addr`` must have passed :func:`check_addr_spec`."""
    shown = header_text(display_name)
    if not shown:
        parts = []
    elif PLAIN_NAME.fullmatch(shown) and all(len(w) <= 70 for w in shown.split(" ")):
        parts = shown.split(" ")  # folded, if at all, at its own spaces
    else:
        parts = encoded_words(shown)
    return _fold(name, [*parts, f"<{addr}>"])


@lru_cache(maxsize=1024)
def subject_header(subject: str) -> str:
    text = header_text(subject)
    return _fold("Subject", _text_parts(text)) if text else "Subject: \n"


@lru_cache(maxsize=8192)
def key_header(key: str) -> str:
    """``X-Branchflow-Dedup-Key``: a plain-ASCII key unfolded on one line; any other key as encoded words."""
    if ADDRESS_CHARS.fullmatch(key) and len(key) <= KEY_ON_ONE_LINE:
        return f"X-Branchflow-Dedup-Key: {key}\n"
    text = header_text(key)
    return _fold("X-Branchflow-Dedup-Key", encoded_words(text)) if text else "X-Branchflow-Dedup-Key: \n"


@lru_cache(maxsize=256)
def date_header(when: dt.datetime) -> str:
    return f"Date: {format_datetime(when.astimezone(dt.UTC))}\n"


@lru_cache(maxsize=8)
def sender_parts(sender: str) -> tuple[str, str]:
    """(the ``From:`` header, the envelope sender) for ``"Name <addr>"``; ``ValueError`` when unusable."""
    name, addr = parseaddr(sender)
    try:
        addr = check_addr_spec(addr)
    except BadAddress as exc:
        raise ValueError(f"发件地址无效（请检查 BRANCHFLOW_SMTP_SENDER）：{sender!r}") from exc
    return address_header("From", name, addr), addr


def _b64(text: str) -> str:
    return base64.encodebytes(text.encode("utf-8")).decode("ascii")


def compose(*, sender: str, recipient: str, recipient_name: str, subject: str, text: str, html: str,
            keys: list[str], date: dt.datetime, message_id: str) -> Mail:
    """The message's bytes; :class:`BadAddress` for an unusable recipient, ``ValueError`` for the rest."""
    addr = check_addr_spec(recipient)
    if not MESSAGE_ID.fullmatch(message_id):
        raise ValueError(f"Message-ID 无效：{message_id!r}")
    from_header, envelope_sender = sender_parts(sender)
    head = [from_header, address_header("To", recipient_name, addr), subject_header(subject), date_header(date),
            f"Message-ID: {message_id}\n", *(key_header(k) for k in keys), "MIME-Version: 1.0\n"]
    if html:
        # base64 bodies never contain "=_", so a boundary that starts with it cannot occur inside them
        boundary = "=_bf_" + hashlib.sha256(message_id.encode()).hexdigest()[:24]
        body = (f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n'
                f"--{boundary}\n"
                'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: base64\n\n'
                f"{_b64(text)}"
                f"--{boundary}\n"
                'Content-Type: text/html; charset="utf-8"\nContent-Transfer-Encoding: base64\n\n'
                f"{_b64(html)}"
                f"--{boundary}--\n")
    else:
        body = f'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: base64\n\n{_b64(text)}'
    data = ("".join(head) + body).encode("ascii")
    return Mail(sender=envelope_sender, recipient=addr, data=data, message_id=message_id, date=date.astimezone(dt.UTC))

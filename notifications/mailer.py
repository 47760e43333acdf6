"""Sending: a small ``Transport`` protocol and three implementations.

    SmtpTransport       aiosmtplib; a few connections reused for many messages (``smtp_concurrency``)
    EmlSink             the embedded default with no SMTP settings: one ``.eml`` file per message
    InMemoryTransport   a fake for unit tests (records messages; can be told to fail)

A transport never raises for a failed message: it returns one :class:`Outcome` per message —
``sent``, ``temporary`` (connection refused, timeouts, 4xx: retry with back-off) or ``permanent``
(5xx, a bad address: dead-letter). Retrying and marking are the dispatcher's business.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path
from typing import Protocol

import aiosmtplib

from workflow.settings import Settings

SENT = "sent"
TEMPORARY = "temporary"
PERMANENT = "permanent"
ADDRESS = re.compile(r"^[^@\s<>\"]+@[^@\s<>\"]+\.[^@\s<>\"]+$")


@dataclass(frozen=True, kw_only=True)
class Outcome:
    status: str  # sent | temporary | permanent
    code: int | None = None
    error: str = ""


class Transport(Protocol):
    def send(self, messages: list[Message]) -> list[Outcome]: ...


def recipient_of(msg: Message) -> str:
    return parseaddr(str(msg["To"]))[1]


def check_address(msg: Message) -> Outcome | None:
    addr = recipient_of(msg)
    if not ADDRESS.match(addr):
        return Outcome(status=PERMANENT, code=None, error=f"收件地址无效：{str(msg['To'])!r}")
    return None


def classify(exc: BaseException) -> Outcome:
    """Map an aiosmtplib or socket error to an outcome: 5xx and refused recipients ≥ 500 are permanent."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        worst = max(codes) if codes else 550
        text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        return Outcome(status=PERMANENT if worst >= 500 else TEMPORARY, code=worst, error=f"收件人被拒绝：{text}")
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPTimeoutError | aiosmtplib.SMTPServerDisconnected):
        return Outcome(status=TEMPORARY, error=f"无法连接邮件服务器：{exc}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        status = PERMANENT if 500 <= exc.code < 600 else TEMPORARY
        return Outcome(status=status, code=exc.code, error=f"邮件服务器返回 {exc.code} {exc.message}")
    if isinstance(exc, OSError | asyncio.TimeoutError):
        return Outcome(status=TEMPORARY, error=f"网络错误：{exc}")
    return Outcome(status=TEMPORARY, error=f"{type(exc).__name__}: {exc}")


class SmtpTransport:
    """aiosmtplib with at most ``concurrency`` connections, each reused for a run of messages."""

    def __init__(self, *, host: str, port: int = 25, username: str = "", password: str = "",
                 starttls: bool = False, tls: bool = False, timeout: float = 30.0, concurrency: int = 4,
                 tls_context: ssl.SSLContext | None = None) -> None:
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.starttls, self.tls = starttls, tls
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.tls_context = tls_context

    @classmethod
    def from_settings(cls, s: Settings) -> SmtpTransport:
        return cls(host=s.smtp_host, port=s.smtp_port, username=s.smtp_user, password=s.smtp_password,
                   starttls=s.smtp_starttls, tls=s.smtp_tls, timeout=s.smtp_timeout, concurrency=s.smtp_concurrency)

    def send(self, messages: list[Message]) -> list[Outcome]:
        if not messages:
            return []
        return asyncio.run(self._send_all(messages))

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(hostname=self.host, port=self.port, use_tls=self.tls, start_tls=self.starttls,
                               timeout=self.timeout, username=self.username or None,
                               password=self.password or None, tls_context=self.tls_context)

    async def _send_all(self, messages: list[Message]) -> list[Outcome]:
        results: list[Outcome | None] = [None] * len(messages)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(messages)):
            queue.put_nowait(i)
        down: list[Outcome] = []

        async def worker() -> None:
            client: aiosmtplib.SMTP | None = None
            try:
                while not queue.empty():
                    i = queue.get_nowait()
                    msg = messages[i]
                    bad = check_address(msg)
                    if bad is not None:
                        results[i] = bad
                        continue
                    if down:  # the server is unreachable: do not wait for a timeout per message
                        results[i] = down[0]
                        continue
                    for attempt in (1, 2):
                        try:
                            if client is None or not client.is_connected:
                                client = self._client()
                                await client.connect()
                            await client.send_message(msg)
                            results[i] = Outcome(status=SENT)
                            break
                        except aiosmtplib.SMTPServerDisconnected as exc:
                            client = None
                            if attempt == 2:
                                results[i] = classify(exc)
                        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPConnectTimeoutError, OSError) as exc:
                            client = None
                            out = classify(exc)
                            down.append(out)
                            results[i] = out
                            break
                        except aiosmtplib.SMTPException as exc:
                            results[i] = classify(exc)
                            if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 421:
                                client = None  # the server is closing the connection
                            else:
                                try:
                                    if client is not None and client.is_connected:
                                        await client.rset()
                                except aiosmtplib.SMTPException:
                                    client = None
                            break
            finally:
                if client is not None and client.is_connected:
                    try:
                        await client.quit()
                    except aiosmtplib.SMTPException:
                        client.close()

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(messages)))))
        return [r or Outcome(status=TEMPORARY, error="未发送") for r in results]


class EmlSink:
    """Writes each message as an ``.eml`` file into ``folder`` (the demo and the no-SMTP default)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def send(self, messages: list[Message]) -> list[Outcome]:
        self.folder.mkdir(parents=True, exist_ok=True)
        out = []
        for msg in messages:
            bad = check_address(msg)
            if bad is not None:
                out.append(bad)
                continue
            mid = str(msg["Message-ID"]).strip("<>").split("@")[0][:16]
            stamp = parsedate_to_datetime(str(msg["Date"])).strftime("%Y%m%dT%H%M%S") if msg["Date"] else "undated"
            name = f"{stamp}_{recipient_of(msg).replace('@', '_at_')}_{mid}.eml"
            path = self.folder / name
            n = 1
            while path.exists():  # a re-send after a crash keeps both copies, like a real mailbox would
                n += 1
                path = self.folder / f"{name[:-4]}.{n}.eml"
            path.write_bytes(msg.as_bytes())
            out.append(Outcome(status=SENT))
        return out


class InMemoryTransport:
    """Records what it 'sends'; ``fail`` maps a recipient to the outcome it should get instead."""

    def __init__(self, fail: Callable[[Message], Outcome | None] | None = None) -> None:
        self.sent: list[Message] = []
        self.fail = fail

    def send(self, messages: list[Message]) -> list[Outcome]:
        out = []
        for msg in messages:
            bad = check_address(msg) or (self.fail(msg) if self.fail else None)
            if bad is not None:
                out.append(bad)
                continue
            self.sent.append(msg)
            out.append(Outcome(status=SENT))
        return out


def transport_for(settings: Settings) -> Transport:
    """SMTP when ``BRANCHFLOW_SMTP_HOST`` is set, else the ``.eml`` sink under the data folder."""
    if settings.smtp_host:
        return SmtpTransport.from_settings(settings)
    return EmlSink(settings.mail_sink_dir)

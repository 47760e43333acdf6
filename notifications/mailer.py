"""Sending: a small ``Transport`` protocol and three implementations.

    SmtpTransport       aiosmtplib; a few connections reused for many messages (``smtp_concurrency``)
    EmlSink             the embedded default with no SMTP settings: one ``.eml`` file per message
    InMemoryTransport   a fake for unit tests (records messages; can be told to fail)

A transport never raises for a failed message: it returns one :class:`Outcome` per message —
``sent``, ``temporary`` (connection refused, timeouts, 4xx: retry with back-off), ``permanent``
(a recipient's 5xx, a bad address: dead-letter), ``held`` (a failure of ours: the server refuses our
login or our sender address, TLS is misconfigured — retried after the fix, never dead-lettered) or
``unsent`` (never handed to the server: a stop was requested, or the dispatcher no longer owns it).
Retrying and marking are the dispatcher's business, through :class:`Hooks`: ``before(i)`` is asked
right before message ``i`` goes out (the dispatcher re-checks that it still owns the claim),
``after(i, outcome)`` is told right after the server answered (the dispatcher marks it there and then),
and ``stop()`` is polled before each message (a graceful stop finishes the message in flight only).
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Protocol

import aiosmtplib

from notifications.wire import Mail
from workflow.settings import Settings

SENT = "sent"
TEMPORARY = "temporary"
PERMANENT = "permanent"
HELD = "held"
UNSENT = "unsent"
ADDRESS = re.compile(r"^[^@\s<>\"\x00-\x1f\x7f]+@[^@\s<>\"\x00-\x1f\x7f]+\.[^@\s<>\"\x00-\x1f\x7f]+$")


@dataclass(frozen=True, kw_only=True)
class Outcome:
    status: str  # sent | temporary | permanent | held | unsent
    code: int | None = None
    error: str = ""


def _yes(_: int) -> bool:
    return True


def _ignore(_: int, __: Outcome) -> None:
    return None


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Hooks:
    """What the dispatcher wants to hear per message (see the module docstring)."""

    before: Callable[[int], bool] = field(default=_yes)
    after: Callable[[int, Outcome], None] = field(default=_ignore)
    stop: Callable[[], bool] = field(default=_never)


NO_HOOKS = Hooks()
NOT_OURS = Outcome(status=UNSENT, error="不再持有该邮件的领取权（已被其他发信进程接管）")
STOPPED = Outcome(status=UNSENT, error="发信进程正在停止，未发送")


Sendable = Mail | Message  # what the dispatcher builds (bytes, built once) or a caller's EmailMessage


class Transport(Protocol):
    def send(self, messages: Sequence[Sendable], hooks: Hooks = NO_HOOKS) -> list[Outcome]: ...


def recipient_of(msg: Sendable) -> str:
    return Mail.of(msg).recipient if isinstance(msg, Message) else msg.recipient


def check_address(mail: Mail) -> Outcome | None:
    if not ADDRESS.match(mail.recipient):
        return Outcome(status=PERMANENT, code=None, error=f"收件地址无效：{mail.recipient!r}")
    return None


def one_by_one(messages: Sequence[Sendable], hooks: Hooks, deliver: Callable[[Mail], Outcome]) -> list[Outcome]:
    """The synchronous transports' loop: stop?, before, check the address, ``deliver``, after — per message."""
    out: list[Outcome] = []
    for i in range(len(messages)):
        if hooks.stop():
            out.extend([STOPPED] * (len(messages) - i))
            break
        if not hooks.before(i):
            out.append(NOT_OURS)
            continue
        mail = Mail.of(messages[i])  # read only now: the dispatcher builds it in ``before``
        out.append(check_address(mail) or deliver(mail))
        hooks.after(i, out[-1])
    return out


def classify(exc: BaseException) -> Outcome:
    """Map an aiosmtplib or socket error to an outcome: only a recipient's 5xx is permanent.

    The server refusing our login, our sender address or our TLS settings is a failure of ours (held).
    """
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        worst = max(codes) if codes else 550
        text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        return Outcome(status=PERMANENT if worst >= 500 else TEMPORARY, code=worst, error=f"收件人被拒绝：{text}")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return Outcome(status=HELD, code=exc.code, error=f"邮件服务器拒绝登录（请检查 BRANCHFLOW_SMTP_USER/PASSWORD）：{exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        if 500 <= exc.code < 600:
            return Outcome(status=HELD, code=exc.code, error=f"邮件服务器拒绝发件地址（请检查 BRANCHFLOW_SMTP_SENDER）：{exc.code} {exc.message}")
        return Outcome(status=TEMPORARY, code=exc.code, error=f"邮件服务器暂不接受发件地址：{exc.code} {exc.message}")
    if isinstance(exc, aiosmtplib.SMTPNotSupported | ssl.SSLError):
        return Outcome(status=HELD, error=f"邮件服务器连接配置错误（TLS/STARTTLS/登录方式）：{exc}")
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

    def send(self, messages: Sequence[Sendable], hooks: Hooks = NO_HOOKS) -> list[Outcome]:
        if not messages:
            return []
        return asyncio.run(self._send_all(messages, hooks))

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(hostname=self.host, port=self.port, use_tls=self.tls, start_tls=self.starttls,
                               timeout=self.timeout, username=self.username or None,
                               password=self.password or None, tls_context=self.tls_context)

    async def _send_all(self, messages: Sequence[Sendable], hooks: Hooks) -> list[Outcome]:
        results: list[Outcome | None] = [None] * len(messages)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(messages)):
            queue.put_nowait(i)
        down: list[Outcome] = []
        async def call(fn: Callable[..., object], *args: object) -> object:
            # The hooks (a short database statement, building one message) run on the loop's own thread:
            # handing them to a worker thread made the two threads wait on each other for the interpreter
            # lock (5 ms switch interval) and halved the rate.
            return fn(*args)

        async def finish(i: int, out: Outcome) -> None:
            results[i] = out
            await call(hooks.after, i, out)

        async def worker() -> None:
            client: aiosmtplib.SMTP | None = None
            try:
                while not queue.empty():
                    i = queue.get_nowait()
                    if hooks.stop():
                        results[i] = STOPPED
                        continue
                    if down:  # the server is unreachable: do not wait for a timeout per message
                        await finish(i, down[0])
                        continue
                    if not await call(hooks.before, i):
                        results[i] = NOT_OURS
                        continue
                    mail = Mail.of(messages[i])  # read only now: the dispatcher builds it in ``before``
                    bad = check_address(mail)
                    if bad is not None:
                        await finish(i, bad)
                        continue
                    out: Outcome | None = None
                    for attempt in (1, 2):
                        try:
                            if client is None or not client.is_connected:
                                client = self._client()
                                await client.connect()
                            # bytes as built: aiosmtplib sends them as they are (no re-serialising)
                            await client.sendmail(mail.sender, [mail.recipient], mail.data)
                            out = Outcome(status=SENT)
                            break
                        except aiosmtplib.SMTPServerDisconnected as exc:
                            client = None
                            if attempt == 2:
                                out = classify(exc)
                        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPConnectTimeoutError, OSError,
                                aiosmtplib.SMTPAuthenticationError, aiosmtplib.SMTPNotSupported) as exc:
                            # a connection that cannot be opened (or logged into) fails every message alike
                            if client is not None:
                                client.close()
                            client = None
                            out = classify(exc)
                            down.append(out)
                            break
                        except aiosmtplib.SMTPException as exc:
                            out = classify(exc)
                            if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == 421:
                                client = None  # the server is closing the connection
                            else:
                                try:
                                    if client is not None and client.is_connected:
                                        await client.rset()
                                except aiosmtplib.SMTPException:
                                    client = None
                            break
                    await finish(i, out or Outcome(status=TEMPORARY, error="未发送"))
            finally:
                if client is not None and client.is_connected:
                    try:
                        await client.quit()
                    except aiosmtplib.SMTPException:
                        client.close()

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(messages)))))
        return [r or STOPPED for r in results]


class EmlSink:
    """Writes each message as an ``.eml`` file into ``folder`` (the demo and the no-SMTP default)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def send(self, messages: Sequence[Sendable], hooks: Hooks = NO_HOOKS) -> list[Outcome]:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.folder.chmod(0o700)  # the mail holds names and grades: the service's user only (issue 14)
        return one_by_one(messages, hooks, self._write)

    def _write(self, mail: Mail) -> Outcome:
        mid = mail.message_id.strip("<>").split("@")[0][:16]
        stamp = mail.date.strftime("%Y%m%dT%H%M%S") if mail.date else "undated"
        name = f"{stamp}_{mail.recipient.replace('@', '_at_').replace('/', '_')}_{mid}.eml"
        path = self.folder / name
        n = 1
        while path.exists():  # a re-send after a crash keeps both copies, like a real mailbox would
            n += 1
            path = self.folder / f"{name[:-4]}.{n}.eml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(mail.data)
        return Outcome(status=SENT)


class InMemoryTransport:
    """Records what it 'sends' (parsed back, as a reader would see it); ``fail`` maps a message to the outcome
    it should get instead."""

    def __init__(self, fail: Callable[[Message], Outcome | None] | None = None) -> None:
        self.sent: list[Message] = []
        self.fail = fail

    def send(self, messages: Sequence[Sendable], hooks: Hooks = NO_HOOKS) -> list[Outcome]:
        return one_by_one(messages, hooks, self._record)

    def _record(self, mail: Mail) -> Outcome:
        msg = mail.message
        bad = self.fail(msg) if self.fail else None
        if bad is None:
            self.sent.append(msg)
        return bad or Outcome(status=SENT)


def transport_for(settings: Settings) -> Transport:
    """SMTP when ``BRANCHFLOW_SMTP_HOST`` is set, else the ``.eml`` sink under the data folder."""
    if settings.smtp_host:
        return SmtpTransport.from_settings(settings)
    return EmlSink(settings.mail_sink_dir)

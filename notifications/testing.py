"""A real SMTP server for tests, demos and benchmarks: aiosmtpd on 127.0.0.1 with a recording handler.

The handler keeps what it received (envelope and raw bytes, parsed on demand with the standard
``email`` parser) and can be switched to answer ``451`` (try again later) or to refuse recipients with
``550``. :class:`SmtpServer` can be stopped and started again on the same port to simulate an outage.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, Self

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        msg = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(msg, EmailMessage)
        return msg

    @property
    def subject(self) -> str:
        return str(self.message["subject"])

    @property
    def keys(self) -> list[str]:
        return [str(k) for k in self.message.get_all("X-Branchflow-Dedup-Key", [])]

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        return str(body.get_content())

    @property
    def html(self) -> str:
        body = self.message.get_body(("html",))
        assert body is not None
        return str(body.get_content())


@dataclass
class RecordingHandler:
    messages: list[Received] = field(default_factory=list)
    mode: str = "ok"  # ok | 451
    reject: set[str] = field(default_factory=set)
    delay: float = 0.0  # seconds the server takes to accept each message (a slow server)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if address.lower() in self.reject:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.mode == "451":
            return "451 4.3.0 Temporary failure, try again later"
        if self.delay:
            await asyncio.sleep(self.delay)
        self.messages.append(Received(mail_from=envelope.mail_from, rcpt_tos=list(envelope.rcpt_tos),
                                      data=bytes(envelope.original_content or envelope.content)))
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SmtpServer:
    """aiosmtpd on 127.0.0.1 (its Controller defaults to ::1); ``stop``/``start`` simulate an outage."""

    def __init__(self, handler: RecordingHandler | None = None, port: int | None = None) -> None:
        self.handler = handler or RecordingHandler()
        self.port = port or free_port()
        self._controller: Controller | None = None

    def start(self) -> SmtpServer:
        if self._controller is None:
            self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
            self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def per_key(self) -> Counter[tuple[str, str]]:
        """How many times the server received each (recipient, dedup key)."""
        return Counter((rcpt, k) for m in self.messages for rcpt in m.rcpt_tos for k in m.keys)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

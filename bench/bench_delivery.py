"""Messages per second delivered to a local aiosmtpd server by the dispatcher, against a plain aiosmtplib loop.

    python bench/bench_delivery.py                     # N = 2,000 messages (one per recipient), 20 ms per message
    python bench/bench_delivery.py --n 5000 --latency-ms 0

N reminders for N different recipients are put in the outbox (SQLite), then:

* the dispatcher delivers them: claim (owner, token, expiry, planned Message-ID) → per message: check
  the claim is still ours, render with Jinja2, build with the email package's structured headers, send
  over ``--concurrency`` reused connections, mark it sent in its own transaction — messages/s;
* a plain aiosmtplib loop with the same number of connections (each ``send_message`` one after the
  other, nothing else) sends the same messages — same recipients, names, subjects, bodies, dedup keys,
  Message-IDs — already built with the email package's structured API (``EmailMessage``, ``Address``,
  ``set_content``/``add_alternative``: what such a loop is written with), in the same run — messages/s;
* for reference, the floor: the same loop sending the dispatcher's own pre-serialised bytes with
  ``sendmail`` (network and SMTP only; nothing is built at all).

The SMTP server is aiosmtpd on 127.0.0.1 in a separate process, counting what it receives; it takes
``--latency-ms`` to accept each message (a real relay takes tens of milliseconds; 0 measures our own
per-message cost against the loop's). The last line is JSON: the ratio dispatcher / plain loop (wall
clock, higher is better), and ``cpu_ratio``, the same comparison in this process's CPU time per message
(plain loop CPU / dispatcher CPU; the server runs in another process), which a loaded machine disturbs
far less than the wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing as mp
import sys
import tempfile
import time
from collections.abc import Sequence
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosmtplib
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from notifications.directory import Recipient
from notifications.dispatch import dispatch
from notifications.mailer import NO_HOOKS, Hooks, Outcome, SmtpTransport
from notifications.models import DeliveryRow
from notifications.outbox import Notice, enqueue
from notifications.render import build_message, message_id, notices_context, render
from notifications.testing import free_port
from notifications.wire import Mail
from workflow.campaigns import create_campaign
from workflow.db import make_engine, session_factory
from workflow.migrate import upgrade
from workflow.models import CampaignRow

TZ = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 4, 7, 9, tzinfo=TZ)
SENDER = "党委组织部 <zzb@bench.cn>"


class Counting:
    def __init__(self, count: Any, latency: float) -> None:
        self.count = count  # a multiprocessing.Value shared with the benchmark
        self.latency = latency

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.latency:
            await asyncio.sleep(self.latency)
        with self.count.get_lock():
            self.count.value += 1
        return "250 OK"


class Capturing(SmtpTransport):
    """The dispatcher's transport, keeping the first message of the run (to check the loop sends the same)."""

    first: ClassVar[list[Mail]] = []

    def send(self, messages: Sequence[Mail | Message], hooks: Hooks = NO_HOOKS) -> list[Outcome]:
        def after(i: int, out: Outcome) -> None:
            if not self.first:
                self.first.append(Mail.of(messages[i]))
            hooks.after(i, out)

        return super().send(messages, Hooks(before=hooks.before, after=after, stop=hooks.stop))


def serve(port: int, count: Any, ready: Any, stop: Any, latency: float) -> None:
    """aiosmtpd in its own process, so the server does not share the client's interpreter lock."""
    controller = Controller(Counting(count, latency), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    stop.wait()
    controller.stop()


def context(i: int) -> dict[str, Any]:
    return {"campaign": "基准 2026 年基层组织建设年", "branch_code": f"B{i:06d}", "branch_name": f"第{i}党支部",
            "general_branch": f"第{i % 50}党总支", "secretary": f"书记{i}", "stage": "self_assessment",
            "stage_label": "支部自评", "deadline": "2026-04-10", "deadline_text": "2026年4月10日", "kind": "reminder",
            "rung": "before-3", "days_left": 3, "days_overdue": 0,
            "missing": ["以下评分项尚未打分：第 1、2、3 项", "未填写支部大会日期"], "owners": ["党支部书记"],
            "contact": f"总支书记{i % 50}（g{i % 50}@bench.cn）", "supervision_order": False}


def email_package_message(i: int, key: str) -> EmailMessage:
    """The same message the dispatcher sends to recipient ``i``, written with the email package's structured API."""
    rcpt, name = f"s{i}@bench.cn", f"书记{i}"
    r = render("notices", notices_context(name, [context(i)], [key]))
    msg = EmailMessage(policy=policy.default)
    msg["From"] = Address(display_name="党委组织部", addr_spec="zzb@bench.cn")
    msg["To"] = Address(display_name=name, addr_spec=rcpt)
    msg["Subject"] = r.subject
    msg["Date"] = NOW.astimezone(dt.UTC)
    msg["Message-ID"] = message_id(rcpt, [key], SENDER)
    msg["X-Branchflow-Dedup-Key"] = key
    msg.set_content(r.text, charset="utf-8", cte="base64")
    msg.add_alternative(r.html, subtype="html", charset="utf-8", cte="base64")
    return msg


def plain_loop(port: int, messages: list[Any], connections: int) -> float:
    async def one(part: list[Any]) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        for m in part:
            if isinstance(m, Mail):
                await smtp.sendmail(m.sender, [m.recipient], m.data)
            else:
                await smtp.send_message(m)
        await smtp.quit()

    async def run() -> None:
        await asyncio.gather(*(one(messages[i::connections]) for i in range(connections)))

    t = time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2_000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    args = ap.parse_args()
    n = args.n
    port = free_port()
    count, ready, stop = mp.Value("i", 0), mp.Event(), mp.Event()
    server = mp.Process(target=serve, args=(port, count, ready, stop, args.latency_ms / 1000), daemon=True)
    server.start()
    ready.wait(30)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
            upgrade(engine)
            sessions = session_factory(engine)
            with sessions() as s, s.begin():
                create_campaign(s, preset="haitang-2022", year=2026, now=NOW - dt.timedelta(days=30))
                camp = s.scalar(select(CampaignRow.id))
                assert camp is not None
                keys = [f"bench/B{i:06d}/self_assessment/2026-04-10/before-3" for i in range(n)]
                notices = [Notice(key=keys[i], campaign_id=camp,
                                  kind="reminder", rung="before-3", due_at=NOW, context=context(i),
                                  recipients=[Recipient(email=f"s{i}@bench.cn", name=f"书记{i}")])
                           for i in range(n)]
                enqueue(s, notices, now=NOW)

            transport = Capturing(host="127.0.0.1", port=port, concurrency=args.concurrency)
            t, c = time.perf_counter(), time.process_time()
            stats = dispatch(sessions, transport, now=NOW, sender=SENDER)
            ours, ours_cpu = time.perf_counter() - t, time.process_time() - c
            with sessions() as s:
                sent = s.scalar(select(func.count()).select_from(DeliveryRow).where(DeliveryRow.status == "sent"))
            assert stats.messages == n == sent == count.value, (stats, sent, count.value)
            sample = transport.first[0]
            print(f"dispatcher ({args.concurrency} connections; claim, check, render, build, send, mark each): "
                  f"{n:,} messages in {ours:.2f} s → {n / ours:,.0f} messages/s")

            messages = [email_package_message(i, key) for i, key in enumerate(keys)]
            same = BytesParser(policy=policy.default).parsebytes(sample.data)
            theirs = messages[int(sample.recipient[1:].split("@")[0])]
            ours_html, theirs_html = same.get_body(("html",)), theirs.get_body(("html",))
            assert ours_html is not None and theirs_html is not None
            assert same["Subject"] == theirs["Subject"] and ours_html.get_content() == theirs_html.get_content()
            assert same["Message-ID"] == theirs["Message-ID"] and same["To"] == theirs["To"]
            def timed(batch: list[Any]) -> tuple[float, float]:
                """(wall, CPU) seconds of the plain loop sending ``batch``; all of it must arrive."""
                before, c = count.value, time.process_time()
                wall = plain_loop(port, batch, args.concurrency)
                cpu = time.process_time() - c
                assert count.value - before == n
                return wall, cpu

            plain, plain_cpu = timed(messages)
            print(f"plain aiosmtplib loop ({args.concurrency} connections, send_message of pre-built EmailMessages, "
                  f"no database): {n:,} messages in {plain:.2f} s → {n / plain:,.0f} messages/s")
            wire = [build_message(sender=SENDER, recipient=f"s{i}@bench.cn", recipient_name=f"书记{i}",
                                  rendered=render("notices", notices_context(f"书记{i}", [context(i)], [key])),
                                  keys=[key], now=NOW) for i, key in enumerate(keys)]
            floor, floor_cpu = timed(wire)
            print(f"floor: the same loop sending pre-serialised bytes (sendmail): {n:,} messages in {floor:.2f} s → "
                  f"{n / floor:,.0f} messages/s")
            ratio = (n / ours) / (n / plain)
            print(f"ratio dispatcher / plain loop: {ratio:.2f}× wall clock, {plain_cpu / ours_cpu:.2f}× CPU "
                  f"(server latency {args.latency_ms:g} ms per message; "
                  f"against the bytes-only floor {(n / ours) / (n / floor):.2f}× wall, {floor_cpu / ours_cpu:.2f}× CPU)")
            engine.dispose()
    finally:
        stop.set()
        server.join(30)
    print(json.dumps({"bench": "delivery", "n": n, "ratio": round(ratio, 3), "connections": args.concurrency,
                      "latency_ms": args.latency_ms, "dispatcher_per_s": round(n / ours, 1),
                      "plain_per_s": round(n / plain, 1), "dispatcher_cpu_s": round(ours_cpu, 2),
                      "plain_cpu_s": round(plain_cpu, 2), "cpu_ratio": round(plain_cpu / ours_cpu, 3),
                      "floor_per_s": round(n / floor, 1), "floor_cpu_s": round(floor_cpu, 2)}))


if __name__ == "__main__":
    main()

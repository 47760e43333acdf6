"""A bad message is alone: names planted with control characters, a bad address, a template that cannot render.

Real aiosmtpd on 127.0.0.1 and a real SQLite file; what the server received is counted per
(recipient, dedup key). The database is written directly (as a buggy import or a hand edit would), past
the input checks, to show that building the mail itself cannot be broken by what a name contains.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

import notifications.render
from notifications.models import DEAD, HELD, SENT, DeliveryRow, OutboxRow
from notifications.testing import SmtpServer
from scheduler.jobs import run_tick
from tests.integration.test_mail_smtp import ORG, SEC, Org, at, deliveries
from workflow.models import Branch, Person
from workflow.settings import Settings

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
EVIL_NAME = "Qian Weidong\nBcc: x@evil.cn"
EVIL_BRANCH = "生物系教工党支部\r\nBcc: y@evil.cn\r\n\r\n<script>"


@pytest.fixture
def smtp() -> Any:
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def settings(smtp: SmtpServer, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_timeout=5,
                    smtp_sender="党委组织部 <zzb@test.cn>")


@pytest.fixture
def org(sessions: sessionmaker[Session], tmp_path: Path) -> Org:
    return Org(sessions, tmp_path)


@SQLITE
def test_control_characters_planted_in_names_add_no_header_and_a_bad_address_is_alone(
        engine: Engine, sessions: sessionmaker[Session], org: Org, smtp: SmtpServer, settings: Settings) -> None:
    org.survey("B1", at(3, 20, 10))
    org.survey("B2", at(3, 20, 10))
    run_tick(engine, settings, now=at(4, 1))
    smtp.messages.clear()
    with sessions() as s, s.begin():  # past every input check, straight into the tables
        s.execute(update(Branch).where(Branch.code == "B1").values(secretary_name=EVIL_NAME, name=EVIL_BRANCH))
        s.execute(update(Branch).where(Branch.code == "B2").values(secretary_email="sec2\r\nBcc: z@evil.cn@test.cn"))
        s.execute(update(Person).where(Person.email == ORG).values(name="组织部 钱\nBcc: o@evil.cn"))
    r = run_tick(engine, settings, now=at(4, 7))

    # B1's reminder arrived once, to B1's secretary only, with the name as an encoded display name
    rcpts = sorted(rcpt for m in smtp.messages for rcpt in m.rcpt_tos)
    assert rcpts == sorted([SEC["B1"], ORG])  # nobody at evil.cn; B2's mail went nowhere
    mail = next(m for m in smtp.messages if m.rcpt_tos == [SEC["B1"]])
    msg = mail.message
    assert msg["Bcc"] is None and msg["Subject"].startswith("【截止提醒】生物系教工党支部 Bcc: y@evil.cn")
    assert msg["To"].addresses[0].display_name == "Qian Weidong Bcc: x@evil.cn"
    assert msg["To"].addresses[0].addr_spec == SEC["B1"]
    assert msg["Message-ID"] and mail.keys == ["haitang-2026/B1/self_assessment/2026-04-10/before-3"]
    assert mail.data.split(b"\r\n\r\n", 1)[0].isascii()
    assert "Qian Weidong" in mail.text  # the body carries the name as it is: it is data there
    # B2's unusable address: dead-lettered alone and reported to the organisation department
    assert r.dispatch.dead == 1 and r.dispatch.reported == 1 and r.dispatch.held == 0
    report = next(m for m in smtp.messages if m.rcpt_tos == [ORG])
    assert report.subject == "【投递失败】1 封通知邮件无法送达"
    assert report.message["Bcc"] is None and report.message["To"].addresses[0].display_name == "组织部 钱 Bcc: o@evil.cn"
    assert "收件地址无效" in report.text
    assert smtp.per_key().most_common(1)[0][1] == 1
    with sessions() as s:
        dead = s.scalars(select(DeliveryRow).where(DeliveryRow.status == DEAD)).one()
        assert dead.recipient.startswith("sec2") and "收件地址无效" in (dead.last_error or "")
    run_tick(engine, settings, now=at(4, 8))  # nothing is sent again
    assert len(smtp.messages) == 2
    assert deliveries(sessions)[SENT] >= 2


@SQLITE
def test_a_template_that_cannot_render_holds_its_messages_alerts_and_they_go_out_after_the_fix(
        engine: Engine, sessions: sessionmaker[Session], org: Org, smtp: SmtpServer, settings: Settings,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mail_dir = tmp_path / "mail-templates"
    shutil.copytree(notifications.render.TEMPLATES, mail_dir)
    monkeypatch.setattr(notifications.render, "TEMPLATES", mail_dir)
    broken = mail_dir / "monthly.txt.j2"
    good = broken.read_text(encoding="utf-8")
    broken.unlink()  # a deployment that lost one template (as a wheel without templates did)

    r = run_tick(engine, settings, now=at(3, 28))
    # the reminders went out; the monthly digest is held (not dead), and the alert reached the department
    subjects = sorted((m.rcpt_tos[0], m.subject) for m in smtp.messages)
    assert subjects == [("gb1@test.cn", "【待办汇总】2项待办：2项即将截止"),
                        (ORG, "【系统告警】1 封通知邮件未能发送（已暂扣，将自动重试）")]
    alert = next(m for m in smtp.messages if m.rcpt_tos == [ORG])
    assert "monthly.txt.j2" in alert.text and "haitang-2026/*/monthly/2026-03/digest" in alert.text
    assert alert.keys and alert.keys[0].startswith("held/")
    assert r.dispatch.held == 1 and r.dispatch.dead == 0 and r.dispatch.alerts == 1
    trouble = r.dispatch.trouble()
    assert trouble is not None and "暂扣" in trouble and "branchflow outbox --status held" in trouble
    with sessions() as s:
        held = s.execute(select(DeliveryRow, OutboxRow.kind).join(OutboxRow, OutboxRow.id == DeliveryRow.outbox_id)
                         .where(DeliveryRow.status == HELD)).one()
        assert held[1] == "monthly" and "邮件模板渲染失败" in (held[0].last_error or "")
        assert held[0].claim_token is None and held[0].holds == 1

    run_tick(engine, settings, now=at(3, 28, 9, 0))  # still broken, and not due yet: nothing more
    r = run_tick(engine, settings, now=at(3, 28, 9, 5))  # due again, still broken: held again, no new alert
    assert len(smtp.messages) == 2 and r.dispatch.held == 1 and r.dispatch.alerts == 0

    broken.write_text(good, encoding="utf-8")  # the fix is deployed
    r = run_tick(engine, settings, now=at(3, 28, 9, 30))
    assert r.dispatch.trouble() is None and r.dispatch.held_total == 0
    monthly = [m for m in smtp.messages if m.subject.startswith("【月调度】")]
    assert len(monthly) == 1 and monthly[0].rcpt_tos == [ORG]
    assert smtp.per_key().most_common(1)[0][1] == 1
    assert deliveries(sessions) == {SENT: 4}  # 2 reminders, the monthly digest, the alert


def test_the_delivery_statuses_are_plain_strings_listed_for_the_health_checks() -> None:
    from notifications.outbox import DELIVERY_STATUSES

    assert DELIVERY_STATUSES == ("pending", "held", "sent", "dead", "cancelled")


def test_a_digest_is_rebuilt_byte_for_byte_from_its_plan() -> None:
    from notifications.render import Rendered, build_message

    r = Rendered(subject="【待办汇总】2项待办", text="正文\n", html="<p>正文</p>\n")
    when = dt.datetime(2026, 4, 7, 1, tzinfo=dt.UTC)
    a, b = (build_message(sender="党委组织部 <zzb@test.cn>", recipient="a@test.cn", recipient_name=EVIL_NAME,
                          rendered=r, keys=["k2", "k1"], now=when) for _ in range(2))
    assert a.as_bytes() == b.as_bytes()
    from email import policy
    from email.parser import BytesParser

    parsed = BytesParser(policy=policy.default).parsebytes(a.as_bytes())
    assert parsed["Bcc"] is None and [str(k) for k in parsed.get_all("X-Branchflow-Dedup-Key", [])] == ["k2", "k1"]


def test_the_demo_ends_with_an_error_when_its_mail_could_not_be_rendered(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from notifications.dispatch import MailUndeliverable
    from workflow.demo import run_demo

    empty = tmp_path / "no-templates"
    empty.mkdir()  # as an install that shipped no templates
    monkeypatch.setattr(notifications.render, "TEMPLATES", empty)
    lines: list[str] = []
    with pytest.raises(MailUndeliverable, match="因邮件模板或配置错误未能生成，已暂扣") as err:
        run_demo(tmp_path / "demo", year=2026, n_branches=4, until=dt.date(2026, 3, 2), echo=lines.append)
    assert err.value.exit_code == 8
    assert any(line.startswith("  错误：有 ") for line in lines)
    from workflow.db import make_engine, session_factory

    engine = make_engine(f"sqlite:///{tmp_path / 'demo' / 'branchflow.db'}")
    with session_factory(engine)() as s:  # held for the fix, none dead-lettered for good
        got = dict(s.execute(select(DeliveryRow.status, func.count()).group_by(DeliveryRow.status)).all())
    engine.dispose()
    # the monthly digest of each of the demo's three institutions is held, not dead; what went out is the
    # alert (one per held notice and organisation department, merged into one mail per department)
    assert got == {HELD: 3, SENT: 12}
    from email import policy
    from email.parser import BytesParser

    sent = [BytesParser(policy=policy.default).parsebytes(p.read_bytes()) for p in (tmp_path / "demo" / "mail").glob("*.eml")]
    assert [str(m["Subject"]) for m in sent] == ["【系统告警】3 封通知邮件未能发送（已暂扣，将自动重试）"] * 4
    assert sorted(str(m["To"]).split("<")[1].rstrip(">") for m in sent) == [
        "gongwei@demo.edu.cn", "zuzhibu@cumtb.demo.edu.cn", "zuzhibu@demo.edu.cn", "zuzhibu@henan.demo.edu.cn"]

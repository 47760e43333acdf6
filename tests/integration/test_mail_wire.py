"""Messages written straight to bytes (notifications/wire.py) read back exactly, add no header, go through SMTP.

Every message is parsed back with the standard ``email`` parser, as a reader's client would; the last
test sends through a real aiosmtpd server and reads what it received.
"""

from __future__ import annotations

import datetime as dt
from email import policy
from email.parser import BytesParser

import pytest

from notifications.mailer import SENT, SmtpTransport
from notifications.render import BadAddress, Rendered, build_message
from notifications.testing import SmtpServer
from notifications.wire import header_text

SENDER = "党委组织部 <zzb@test.cn>"
WHEN = dt.datetime(2026, 4, 7, 9, tzinfo=dt.timezone(dt.timedelta(hours=8)))
NAMES = ["书记甲", "Qian Weidong\nBcc: x@evil.cn", "组织部 钱\r\nBcc: o@evil.cn\r\n\r\n<script>", "", "Dr. Li",
         "=?utf-8?b?QmNjOiB4QGV2aWwuY24=?=", 'a"b<c>,d;e', "x\u202ey\u200bz", "钱" * 15, "Li " * 40, "\x00\x1b\x7f"]
SUBJECTS = ["【截止提醒】生物系教工党支部“支部自评”环节将于2026年4月10日截止（还剩3天）",
            "Plain ASCII subject", "生物系\r\nBcc: y@evil.cn\r\n\r\n<script>" * 5, "=?utf-8?q?x?= trick", ""]
LONG_ASCII_KEY = "haitang-2026/" + "B" * 60 + "/self_assessment/2026-04-10/before-3/" + "x" * 200
CHINESE_KEY = "海棠党委2026/生物系教工党支部第一支部/self_assessment/2026-04-10/before-3" * 3
KEYS = [LONG_ASCII_KEY, CHINESE_KEY, "k/short"]
HEADERS = ["From", "To", "Subject", "Date", "Message-ID", "X-Branchflow-Dedup-Key", "X-Branchflow-Dedup-Key",
           "X-Branchflow-Dedup-Key", "MIME-Version", "Content-Type"]


def build(name: str, subject: str, *, html: str = "<p>正文</p>\n", keys: list[str] = KEYS) -> bytes:
    r = Rendered(subject=subject, text="正文：" + name + "\n", html=html)
    return build_message(sender=SENDER, recipient="sec1@test.cn", recipient_name=name, rendered=r, keys=keys,
                         now=WHEN).as_bytes()


@pytest.mark.parametrize("subject", SUBJECTS)
@pytest.mark.parametrize("name", NAMES)
def test_names_subjects_and_keys_read_back_exactly_and_add_no_header(name: str, subject: str) -> None:
    data = build(name, subject)
    head = data.split(b"\n\n", 1)[0]
    assert head.isascii() and max(len(line) for line in data.split(b"\n")) <= 998
    msg = BytesParser(policy=policy.default).parsebytes(data)
    assert list(msg.keys()) == HEADERS and not msg.defects
    to = msg["To"].addresses
    assert len(to) == 1 and to[0].addr_spec == "sec1@test.cn" and not msg["To"].defects
    assert to[0].display_name == header_text(name)  # up to 15 Chinese characters: one encoded word
    assert msg["From"].addresses[0].display_name == "党委组织部" and msg["From"].addresses[0].addr_spec == "zzb@test.cn"
    assert str(msg["Subject"]) == header_text(subject)
    assert [str(k) for k in msg.get_all("X-Branchflow-Dedup-Key", [])] == KEYS  # no leading space, no fold
    assert msg["Date"].datetime == WHEN
    assert msg.get_body(("plain",)).get_content() == "正文：" + name + "\n"  # type: ignore[union-attr]
    assert msg.get_body(("html",)).get_content() == "<p>正文</p>\n"  # type: ignore[union-attr]


def test_a_plain_ascii_key_is_written_on_one_line_as_it_is() -> None:
    data = build("书记甲", "提醒")
    assert f"\nX-Branchflow-Dedup-Key: {LONG_ASCII_KEY}\n".encode() in data


def test_the_same_inputs_give_the_same_bytes_and_a_text_only_message_is_one_part() -> None:
    assert build(NAMES[1], SUBJECTS[0]) == build(NAMES[1], SUBJECTS[0])
    msg = BytesParser(policy=policy.default).parsebytes(build("书记甲", "提醒", html=""))
    assert msg.get_content_type() == "text/plain" and msg.get_content() == "正文：书记甲\n"


@pytest.mark.parametrize("addr", ["sec1\r\nBcc: z@evil.cn@test.cn", "a b@test.cn", "<a@test.cn>", "a@test",
                                  "a@test.cn,b@test.cn", "钱@test.cn", "a@.cn"])
def test_an_unusable_address_is_refused(addr: str) -> None:
    with pytest.raises(BadAddress, match="收件地址无效"):
        build_message(sender=SENDER, recipient=addr, recipient_name="x", rendered=Rendered(subject="s", text="t", html=""),
                      keys=["k"], now=WHEN)


def test_through_smtp_the_server_receives_the_keys_exactly_and_no_extra_recipient() -> None:
    r = Rendered(subject=SUBJECTS[2], text="正文\n", html="<p>正文</p>\n")
    mails = [build_message(sender=SENDER, recipient=f"s{i}@test.cn", recipient_name=NAMES[i], rendered=r,
                           keys=[LONG_ASCII_KEY + str(i), CHINESE_KEY + str(i)], now=WHEN) for i in range(3)]
    with SmtpServer() as server:
        outcomes = SmtpTransport(host="127.0.0.1", port=server.port, timeout=10, concurrency=2).send(mails)
        got = sorted(server.messages, key=lambda m: m.rcpt_tos)
    assert [o.status for o in outcomes] == [SENT] * 3
    assert [m.rcpt_tos for m in got] == [["s0@test.cn"], ["s1@test.cn"], ["s2@test.cn"]]
    for i, m in enumerate(got):
        assert m.keys == [LONG_ASCII_KEY + str(i), CHINESE_KEY + str(i)]
        assert m.message["Bcc"] is None and m.message["To"].addresses[0].display_name == header_text(NAMES[i])
        assert m.mail_from == "zzb@test.cn" and str(m.message["Message-ID"]) == mails[i].message_id

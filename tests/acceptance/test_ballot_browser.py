"""A ballot of 32 codes, 30 voters, in real Chromium on a phone (390×844) against uvicorn on 127.0.0.1: the
general-branch secretary opens it on the page with a roster (10 people, mailed through a real aiosmtpd
sink by the dispatcher) and 22 on-site codes (read from the printed QR sheet); 30 people vote, some by
typing their code; a used code and a closed ballot are refused; the page shows participation only while
open; closing writes the record, whose commitment the export recounts."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from notifications.testing import SmtpServer
from scheduler.jobs import run_dispatch
from states.base import Stage
from tests.acceptance.conftest import Server, Site, shot
from tests.acceptance.test_browser import log_in
from tests.support.world import at
from workflow import ballots, service
from workflow.settings import Settings

pytestmark = pytest.mark.slow

RATING = "1. 对本支部工作的总体评价"
MEMBERS_Q = "2. 您对本支部党员发挥先锋模范作用是否满意？"
SECRETARY_Q = "3. 您对本支部书记的工作是否满意？"


def vote(page: Any, rating: str, members: bool, secretary: bool, comment: str = "") -> None:
    page.get_by_role("group", name=RATING).get_by_label(rating, exact=True).check()
    page.get_by_role("group", name=MEMBERS_Q).get_by_label("满意" if members else "不满意", exact=True).check()
    page.get_by_role("group", name=SECRETARY_Q).get_by_label("满意" if secretary else "不满意", exact=True).check()
    if comment:
        page.get_by_label("最多 500 字").fill(comment)
    page.get_by_role("button", name="提交选票").click()
    assert "您的选票已提交" in page.get_by_role("status").inner_text()


def test_thirty_people_vote_on_their_phones_and_the_tally_recounts(
        live: tuple[Site, Server], phone: Any, tmp_path: Path) -> None:
    site, server = live
    site.world.drive("B1", Stage.member_evaluation)
    site.clock.now = at(4, 10, 9)
    roster = tmp_path / "名单.csv"
    roster.write_text("姓名,邮箱,类别\n" + "".join(
        f"测评人{i},voter{i}@test.cn,{'党员' if i < 6 else '群众代表'}\n" for i in range(10)), encoding="utf-8")

    log_in(phone, server, "gb1")
    phone.goto(f"{server.url}/branches/B1/ballot")
    phone.get_by_label("截止时间（北京时间）").fill("2026-04-12T18:00")
    phone.get_by_label(re.compile("测评人名单")).set_input_files(str(roster))
    phone.get_by_label(re.compile("现场测评码数量")).fill("22")
    phone.get_by_role("button", name="发起").click()
    from playwright.sync_api import expect

    slips = phone.locator("#sheet .slip")
    expect(slips).to_have_count(22, timeout=30_000)  # count() does not wait for the page the click loads
    assert slips.first.locator("svg").count() == 1  # the QR code, drawn by segno
    sheet = [(s.get_attribute("data-code"), s.get_attribute("data-link")) for s in slips.all()]
    for code, link in sheet:
        assert link == f"{server.url}/v/{code}" and re.fullmatch(r"([2-9A-HJ-NP-Z]{5}-){3}[2-9A-HJ-NP-Z]{5}", code)
    shot(phone, "ballot-01-qr-sheet")

    with SmtpServer() as smtp:
        settings = Settings(smtp_host="127.0.0.1", smtp_port=smtp.port, data_dir=tmp_path)
        with ThreadPoolExecutor(1) as pool:  # the dispatcher runs its own event loop; Playwright's holds this thread
            stats = pool.submit(run_dispatch, site.world.sessions.kw["bind"], settings, now=site.clock.now).result()
        assert stats.delivered == 10
        mails = list(smtp.messages)
    assert sorted(m.rcpt_tos[0] for m in mails) == sorted(f"voter{i}@test.cn" for i in range(10))
    mailed = []
    for m in mails:
        assert "生物系教工党支部" in m.subject and "网上测评" in m.subject
        mailed.append(re.search(r"投票链接：(\S+)", m.text).group(1))  # type: ignore[union-attr]
    with site.world.sessions() as s:  # the codes no longer sit in the outbox once the mail is sent
        from notifications.ballots import scrub
        from notifications.models import OutboxRow
        scrub(s)
        s.commit()
        assert all(not r.context["code"] for r in s.query(OutboxRow).filter(OutboxRow.kind == "ballot"))

    grades = [c["label"] for c in ballots.form_for(site.world.case("B1").campaign)["rating"]["choices"]]
    links = mailed + [link for _, link in sheet[:18]]
    typed = [code for code, _ in sheet[18:20]]  # two people type their code instead of scanning
    answers = [(grades[i % len(grades)], i % 4 != 0, i % 5 != 0) for i in range(30)]
    voter = phone.context.browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                              has_touch=True, locale="zh-CN").new_page()
    for i, link in enumerate(links):
        voter.goto(link)
        if i == 0:
            shot(voter, "ballot-02-vote-form")
        vote(voter, *answers[i], comment="希望多组织主题党日" if i == 3 else "")
        if i == 14:  # half-way: the secretary sees participation, not results
            phone.goto(f"{server.url}/branches/B1/ballot")
            assert "已投票 15 / 可投票 32" in phone.locator("#participation").inner_text()
            assert phone.locator("#result").count() == 0
            shot(phone, "ballot-03-live-participation")
    for j, code in enumerate(typed):
        voter.goto(f"{server.url}/v")
        voter.get_by_label(re.compile("测评码")).fill(code.replace("-", " ").lower())
        voter.get_by_role("button", name="下一步").click()
        vote(voter, *answers[28 + j])

    voter.goto(links[5])  # a used code
    assert "此测评码已经投过票" in voter.get_by_role("alert").inner_text()
    shot(voter, "ballot-04-used-code")
    voter.goto(f"{server.url}/v/{'2' * 20}")
    assert "测评码无效" in voter.get_by_role("alert").inner_text()

    phone.goto(f"{server.url}/branches/B1/ballot")
    assert "已投票 30 / 可投票 32" in phone.locator("#participation").inner_text()
    phone.get_by_role("button", name="立即关闭并计票").click()
    assert "网上测评已关闭" in phone.locator("p.notice").inner_text()
    commitment = phone.locator("#commitment").inner_text()
    result = phone.locator("#result").inner_text()
    shot(phone, "ballot-05-closed")

    voter.goto(sheet[21][1])  # an unused code after closing
    assert "本次测评已经结束" in voter.get_by_role("alert").inner_text()

    sat_m = sum(1 for a in answers if a[1]) / 30
    sat_s = sum(1 for a in answers if a[2]) / 30
    assert "票数 30" in result and "网上测评" in result
    assert f"群众对党员发挥作用满意率 {sat_m * 100:.1f}%" in result
    assert f"党员对支部书记满意率 {sat_s * 100:.1f}%" in result
    rec = site.world.case("B1").state["records"]["member_evaluation"]
    assert rec["source"] == "online" and rec["online"]["commitment"] == commitment
    with site.world.sessions() as s:
        exported = ballots.export_of(s, rec["online"]["ballot_id"], service.actor_for(s, "gb1@test.cn"))
    rc = ballots.recount(exported, commitment=commitment)
    assert rc.matches and rc.ballots == 30 and rc.tally == rec["tally"]
    assert "希望多组织主题党日" in exported

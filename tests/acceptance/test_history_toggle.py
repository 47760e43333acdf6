"""The history on the branch page (issue 16, point 3): the system's reminders are hidden behind a link that
keeps its state in the address (``?system=1``, no script), and shown they name people, never addresses."""

from __future__ import annotations

from scheduler.sweep import sweep
from tests.acceptance.conftest import Site
from tests.support.world import at


def test_system_reminders_are_behind_a_toggle_kept_in_the_address(site: Site) -> None:
    w = site.world
    with w.sessions() as s, s.begin():
        sweep(s, now=at(3, 24, 10))  # 7 days before the survey's deadline: a reminder to the general branch
    site.clock.now = at(3, 24, 11)
    c = site.page_client("gb1")
    page = c.get("/branches/B1").text
    assert "显示系统提醒与督促（1 条）" in page and 'href="/branches/B1?system=1#history-title"' in page
    assert "前 7 天提醒" not in page
    shown = c.get("/branches/B1", params={"system": "1"}).text
    assert "前 7 天提醒：总支书记 赵" in shown and "隐藏系统提醒" in shown
    assert "gb1@test.cn" not in shown and ">system<" not in shown and "系统" in shown

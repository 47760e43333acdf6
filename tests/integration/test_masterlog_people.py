"""Adding a person records exactly that person in the master-data log, with their roles."""

from __future__ import annotations

import json

from sqlalchemy import select

from states.base import Role
from tests.support.world import World
from workflow.masterlog import verify_master
from workflow.models import MasterEventRow
from workflow.people import add_person


def test_adding_a_person_records_that_person_only(world: World) -> None:
    with world.sessions() as s, s.begin():
        before = s.scalar(select(MasterEventRow.id).order_by(MasterEventRow.id.desc()).limit(1)) or 0
        add_person(s, "new.auditor@example.edu.cn", "新审计", [Role.auditor])
    with world.sessions() as s:
        rows = s.execute(select(MasterEventRow.subject, MasterEventRow.body)
                         .where(MasterEventRow.id > before)).all()
        assert [r.subject for r in rows] == ["person:new.auditor@example.edu.cn"]
        data = json.loads(rows[0].body)["data"]
        assert data["name"] == "新审计" and data["roles"] == [["auditor", ""]]
        assert list(verify_master(s)) == []

"""A branch walks through all seven stages on SQLite and PostgreSQL; the audit log verifies."""

from __future__ import annotations

from states.base import Stage
from tests.support.world import World
from workflow import audit


def test_branch_reaches_accepted_and_chain_verifies(world: World) -> None:
    world.drive("B1", Stage.accepted)
    case = world.case("B1")
    assert case.stage is Stage.accepted
    assert case.state["final_grade"] == "average"  # 80 points on the seed-003 scale: 一般
    assert case.state["regrade"] == "advanced"  # re-graded at 90 → 先进
    with world.sessions() as s:
        report = audit.verify(s)
    assert report.ok, [str(p) for p in report.problems]
    assert report.cases == 4
    moves = [e for e in world_events(world, "B1") if e["kind"] == "moved"]
    assert [(m["payload"]["from"], m["payload"]["to"]) for m in moves] == [
        ("survey", "self_assessment"), ("self_assessment", "member_evaluation"),
        ("member_evaluation", "committee_grading"), ("committee_grading", "publicity"),
        ("publicity", "rectification"), ("rectification", "acceptance"), ("acceptance", "accepted"),
    ]


def world_events(world: World, branch: str) -> list[dict]:  # type: ignore[type-arg]
    with world.sessions() as s:
        return list(audit.events_of(s, world.case(branch).row.id))

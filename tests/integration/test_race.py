"""A lost race reads as one: the loser of two `advance` calls is told someone else moved the branch first
(Conflict, exit 6), not the unmet criteria of the stage the winner moved it to — SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from states.base import Stage
from tests.support.world import GB_SEC, World, at
from workflow import audit, service
from workflow.errors import Conflict, TransitionRefused
from workflow.repository import load_case


def test_the_loser_of_two_advances_learns_the_stage_it_saw_and_its_retry_reports_the_race(world: World) -> None:
    world.do(service.record, "B1", GB_SEC, world.survey_data(), now=at(3, 20))
    s1, s2 = world.sessions(), world.sessions()
    try:
        stale = load_case(s2, "B1")  # the loser has read the branch in 调查摸底 …
        service.advance(s1, "B1", service.actor_for(s1, GB_SEC), now=at(3, 21))
        s1.commit()  # … when the winner moves it on
        service._move(s2, stale, service.actor_for(s2, GB_SEC), "advance", at(3, 21))
        with pytest.raises(service.LostRace) as lost:
            service._commit_point(s2, stale, at(3, 21))
        s2.rollback()
        assert lost.value.exit_code == 6 and lost.value.stage is Stage.survey
        # the retry the CLI makes: from the stage first seen, which the branch has left
        with pytest.raises(Conflict) as err:
            service.advance(s2, "B1", service.actor_for(s2, GB_SEC), now=at(3, 21), from_stage=lost.value.stage)
        s2.rollback()
    finally:
        s1.close()
        s2.close()
    assert not isinstance(err.value, TransitionRefused) and err.value.exit_code == 6
    assert "已被他人先一步推进" in err.value.message
    assert "调查摸底" in err.value.message and "支部自评" in err.value.message
    case = world.case("B1")
    assert case.stage is Stage.self_assessment and case.version == 3
    with world.sessions() as s:
        assert audit.verify(s).ok


def test_a_retry_from_the_stage_still_current_moves_and_unmet_criteria_still_refuse(world: World) -> None:
    with pytest.raises(TransitionRefused):  # nothing recorded yet: a plain refusal, exit 5
        world.do(service.advance, "B1", GB_SEC, now=at(3, 20), from_stage=Stage.survey)
    world.do(service.record, "B1", GB_SEC, world.survey_data(), now=at(3, 20))
    case = world.do(service.advance, "B1", GB_SEC, now=at(3, 21), from_stage=Stage.survey)
    assert case.stage is Stage.self_assessment

"""The machine as declared: every (stage, trigger) pair either moves where the table says or is refused."""

from __future__ import annotations

import pytest

from states.base import Stage
from workflow import machine
from workflow.errors import TransitionRefused, Unmet

EXPECTED = {
    (Stage.survey, "advance"): Stage.self_assessment,
    (Stage.self_assessment, "advance"): Stage.member_evaluation,
    (Stage.member_evaluation, "advance"): Stage.committee_grading,
    (Stage.committee_grading, "advance"): Stage.publicity,
    (Stage.publicity, "advance"): Stage.rectification,
    (Stage.publicity, "uphold_objection"): Stage.committee_grading,
    (Stage.rectification, "advance"): Stage.acceptance,
    (Stage.acceptance, "advance"): Stage.accepted,
    (Stage.acceptance, "fail_inspection"): Stage.rectification,
}


@pytest.mark.parametrize("stage", list(Stage), ids=lambda s: s.value)
@pytest.mark.parametrize("trigger", list(machine.TRIGGER_LABELS))
def test_every_stage_trigger_pair(stage: Stage, trigger: str) -> None:
    expected = EXPECTED.get((stage, trigger))
    if expected is None:
        with pytest.raises(TransitionRefused) as err:
            machine.fire(stage, trigger)
        assert stage.label in err.value.message
        assert machine.TRIGGER_LABELS[trigger] in err.value.message
    else:
        assert machine.fire(stage, trigger) is expected


def test_guard_failure_names_what_is_unmet_and_moves_nothing() -> None:
    unmet = [Unmet(code="x.y", message="缺少支部大会日期")]
    with pytest.raises(TransitionRefused) as err:
        machine.fire(Stage.self_assessment, "advance", lambda: unmet)
    assert err.value.unmet == unmet
    assert "缺少支部大会日期" in err.value.message
    assert machine.fire(Stage.self_assessment, "advance") is Stage.member_evaluation  # the refusal left no trace


def test_carriers_are_per_thread_moves_do_not_mix_and_leave_with_their_thread() -> None:
    import gc
    import threading

    stages = [s for s in Stage if s is not Stage.accepted]
    wrong: list[tuple[Stage, Stage]] = []

    def work(k: int) -> None:
        for i in range(300):
            src = stages[(i + k) % len(stages)]
            dest = machine.fire(src, "advance")
            if dest is not EXPECTED[(src, "advance")]:
                wrong.append((src, dest))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
    del threads, t
    gc.collect()
    # only this thread's carrier is left: the machine never grows with branches, nor with dead threads
    assert len(machine._MACHINE.models) <= 1


def test_no_auto_transitions_and_unknown_triggers_refused() -> None:
    with pytest.raises(TransitionRefused, match="未知的操作"):
        machine.fire(Stage.survey, "to_accepted")
    with pytest.raises(TransitionRefused, match="已是终态"):
        machine.fire(Stage.accepted, "advance")


def test_destination_table_matches_fire() -> None:
    for (stage, trigger), dest in EXPECTED.items():
        assert machine.destination(stage, trigger) is dest
    assert machine.legal_triggers(Stage.publicity) == ["advance", "uphold_objection"]

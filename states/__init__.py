"""One module per stage of a branch's case; `SPECS` maps each working stage to its declaration."""

from __future__ import annotations

from states.base import ROLE_LABELS, STAGE_LABELS, WORKING_STAGES, Role, Stage, StageSpec

__all__ = ["ROLE_LABELS", "SPECS", "STAGE_LABELS", "WORKING_STAGES", "Role", "Stage", "StageSpec", "spec_for"]


def _load() -> dict[Stage, StageSpec]:
    from states import (
        acceptance,
        committee_grading,
        member_evaluation,
        publicity,
        rectification,
        self_assessment,
        survey,
    )

    mods = [survey, self_assessment, member_evaluation, committee_grading, publicity, rectification, acceptance]
    return {m.SPEC.stage: m.SPEC for m in mods}


SPECS: dict[Stage, StageSpec] = {}


def spec_for(stage: Stage) -> StageSpec:
    if not SPECS:
        SPECS.update(_load())
    return SPECS[stage]

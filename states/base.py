"""What every stage module shares: the stage and role vocabularies and the shape of a stage spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict

from workflow.errors import Unmet

if TYPE_CHECKING:
    from workflow.campaign import Campaign
    from workflow.case import BranchFacts, State


class Stage(StrEnum):
    """The seven stages of a branch's case, in order, and the final state."""

    survey = "survey"
    self_assessment = "self_assessment"
    member_evaluation = "member_evaluation"
    committee_grading = "committee_grading"
    publicity = "publicity"
    rectification = "rectification"
    acceptance = "acceptance"
    accepted = "accepted"

    @property
    def label(self) -> str:
        return STAGE_LABELS[self]

    @property
    def number(self) -> int:
        return list(Stage).index(self) + 1


STAGE_LABELS: dict[Stage, str] = {
    Stage.survey: "调查摸底",
    Stage.self_assessment: "支部自评",
    Stage.member_evaluation: "党员群众测评",
    Stage.committee_grading: "党委评定",
    Stage.publicity: "公示",
    Stage.rectification: "整改（晋位升级）",
    Stage.acceptance: "检查验收",
    Stage.accepted: "已验收",
}

WORKING_STAGES: tuple[Stage, ...] = tuple(s for s in Stage if s is not Stage.accepted)


class Role(StrEnum):
    """Roles people act in; each but auditor is scoped to a branch, general branch or committee."""

    branch_secretary = "branch_secretary"
    general_branch_secretary = "general_branch_secretary"
    org_department = "org_department"
    committee_member = "committee_member"
    auditor = "auditor"

    @property
    def label(self) -> str:
        return ROLE_LABELS[self]


ROLE_LABELS: dict[Role, str] = {
    Role.branch_secretary: "党支部书记",
    Role.general_branch_secretary: "党总支书记",
    Role.org_department: "组织部",
    Role.committee_member: "党委委员",
    Role.auditor: "审计人员",
}


class Record(BaseModel):
    """Base of the data a stage records: frozen, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ExitCheck(Protocol):
    def __call__(
        self, state: State, campaign: Campaign, facts: BranchFacts, *, now: Any
    ) -> list[Unmet]: ...


@dataclass(frozen=True, kw_only=True)
class StageSpec:
    """A stage declared as data: who records its data, who moves the case on, what must hold to leave."""

    stage: Stage
    record_model: type[Record] | None
    recorders: frozenset[Role]
    advancers: frozenset[Role]
    can_leave: ExitCheck
    deadline_key: str
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.stage.label

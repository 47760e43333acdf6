"""Hypothesis fires random actions by random people at random branches on a real SQLite file and checks,
after every step: only declared moves happened, a refused action changed nothing, every chain verifies and
every projection equals its replay.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from states.base import Stage
from tests.support.world import AUDITOR, GB2_SEC, GB_SEC, MEMBERS, ORG, World, at
from workflow import audit, machine, service
from workflow.db import make_engine, session_factory
from workflow.errors import BranchflowError
from workflow.migrate import upgrade

BRANCHES = ["B1", "B4"]  # B4's secretary is committee member m3: self-signing gets tried too
PEOPLE = [ORG, GB_SEC, GB2_SEC, AUDITOR, *MEMBERS, "sec1@test.cn", "sec2@test.cn", "sec3@test.cn"]
LEGAL = {(t["source"], t["dest"]) for t in machine.TRANSITIONS}


class CaseMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.engine = make_engine(f"sqlite:///{Path(self.dir.name) / 'bf.db'}")
        upgrade(self.engine)
        self.world = World(session_factory(self.engine))
        self.clock = at(3, 2)
        self.moves = 0

    def teardown(self) -> None:
        self.engine.dispose()
        self.dir.cleanup()

    def _data(self, branch: str, stage: Stage, quality: float) -> dict[str, Any]:
        w = self.world
        if stage is Stage.survey:
            return w.survey_data()
        if stage is Stage.self_assessment:
            return w.self_data(branch, quality)  # quality > 1 puts scores out of bounds
        if stage is Stage.member_evaluation:
            return w.eval_data(ballots=int(quality * 8), rating=min(100, quality * 90))
        if stage is Stage.rectification:
            return {"items": [{"problem": "组织生活不规范", "measure": "主题党日", "due": "2026-07-31", "contact": "委员"}],
                    "submitted": quality > 0.5, "self_analysis": "自我剖析"}
        if stage is Stage.acceptance:
            return {"passed": quality > 0.4, "summary": "检查验收情况", "inspected_on": self.clock.date().isoformat(),
                    "regrade_score": min(100, quality * 95),
                    "new_deadline": (self.clock.date() + dt.timedelta(days=20)).isoformat()}
        return {}

    @rule(branch=st.sampled_from(BRANCHES), who=st.sampled_from(PEOPLE),
          action=st.sampled_from(["record", "advance", "grade", "adjust", "sign", "publish", "object", "resolve",
                                  "complete"]),
          quality=st.floats(0.2, 1.2), hours=st.integers(1, 24 * 9), upheld=st.booleans())
    def act(self, branch: str, who: str, action: str, quality: float, hours: int, upheld: bool) -> None:
        self.clock += dt.timedelta(hours=hours)
        w = self.world
        before = w.case(branch)
        stage = before.stage
        calls = {
            "record": lambda: w.do(service.record, branch, who, self._data(branch, stage, quality), now=self.clock),
            "advance": lambda: w.do(service.advance, branch, who, now=self.clock),
            "grade": lambda: w.do(service.compute_grade, branch, who, now=self.clock),
            "adjust": lambda: w.do(service.adjust_grade, branch, who, "average", "党委研究决定调整", now=self.clock),
            "sign": lambda: w.do(service.sign, branch, who, now=self.clock),
            "publish": lambda: w.do(service.publish, branch, who, now=self.clock),
            "object": lambda: w.do(service.lodge_objection, branch, who, "对评定结果有异议", now=self.clock),
            "resolve": lambda: w.do(service.resolve_objection, branch, who, len(before.state["objections"]),
                                    upheld=upheld, reason="经核实处理", now=self.clock),
            "complete": lambda: w.do(service.complete_item, branch, who, 1, "完成佐证", now=self.clock),
        }
        try:
            calls[action]()
        except BranchflowError:
            after = w.case(branch)
            assert after.version == before.version and after.state == before.state, "a refused action changed the case"
            return
        after = w.case(branch)
        assert after.version > before.version
        if after.stage is not stage:
            assert (stage, after.stage) in LEGAL, f"illegal move {stage} → {after.stage} by {action}"
            self.moves += 1

    @rule(branch=st.sampled_from(BRANCHES), quality=st.floats(0.3, 1.05), hours=st.integers(1, 24 * 6),
          upheld=st.booleans(), member=st.sampled_from(MEMBERS))
    def act_as_the_right_person(self, branch: str, quality: float, hours: int, upheld: bool, member: str) -> None:
        """Mostly-sensible work, so that random runs reach the later stages and both backward moves."""
        w = self.world
        stage = w.stage(branch)
        who = {
            Stage.survey: w.gb_sec(branch), Stage.self_assessment: w.secretary(branch),
            Stage.member_evaluation: w.gb_sec(branch), Stage.committee_grading: member,
            Stage.publicity: ORG, Stage.rectification: w.secretary(branch), Stage.acceptance: w.gb_sec(branch),
        }.get(stage, ORG)
        case = w.case(branch)
        if stage is Stage.committee_grading:
            action = "grade" if not case.state["grade"] else ("sign" if quality < 0.9 else "advance")
            if len(case.state["signatures"]) >= 2:
                action, who = "advance", ORG
        elif stage is Stage.publicity:
            action = "publish" if not case.state["publicity"] else ("resolve" if case.state["objections"] and
                                                                    case.state["objections"][-1]["status"] == "open"
                                                                    else ("object" if quality < 0.4 else "advance"))
        elif stage is Stage.rectification and case.state["records"].get("rectification", {}).get("submitted"):
            items = case.state["records"]["rectification"]["items"]
            action = "complete" if any(not i.get("done") for i in items) else "advance"
        else:
            action = "record" if quality < 0.75 else "advance"
        if action == "object":
            who = "sec3@test.cn"
        self.act(branch, who, action, quality, hours, upheld)

    @rule(branch=st.sampled_from(BRANCHES), quality=st.floats(0.3, 1.05), hours=st.integers(1, 24 * 6),
          upheld=st.booleans(), member=st.sampled_from(MEMBERS))
    def act_as_the_right_person_again(self, branch: str, quality: float, hours: int, upheld: bool, member: str) -> None:
        """The same rule once more, so sensible work outweighs random attempts two to one."""
        self.act_as_the_right_person(branch, quality, hours, upheld, member)

    @invariant()
    def chains_verify_and_projections_equal_replay(self) -> None:
        with self.world.sessions() as s:
            report = audit.verify(s)
        assert report.ok, [str(p) for p in report.problems]


TestCaseMachine = CaseMachine.TestCase
TestCaseMachine.settings = settings(max_examples=15, stateful_step_count=60, deadline=None,
                                    suppress_health_check=[HealthCheck.too_slow])

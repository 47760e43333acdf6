"""The Merkle log against people who run the database — SQLite and PostgreSQL.

Each attack is made after a signed checkpoint was taken; the chains alone may not see it (that is the
point of the checkpoint), the rebuilt tree compared with the checkpoint does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text, update

from states.base import Stage
from tests.support.world import MEMBERS, World, at
from workflow import audit, checkpoint, merkle, sequencer
from workflow.audit import GENESIS, canonical, chain
from workflow.case import current_grade, replay
from workflow.models import CaseRow
from workflow.repository import campaign_of, effective_deadline, get_campaign_row

ORIGIN = "test.example/audit"


@pytest.fixture
def logged(world: World) -> tuple[World, checkpoint.Signer, str]:
    world.drive("B1", Stage.publicity)
    world.drive("B2", Stage.member_evaluation)
    signer = checkpoint.generate(ORIGIN)
    return world, signer, _checkpoint(world, signer)


def _checkpoint(world: World, signer: checkpoint.Signer) -> str:
    with world.sessions() as s, s.begin():
        return checkpoint.make(s, signer, reason="test", now=at(5, 1)).note


def _verify_log(world: World, signer: checkpoint.Signer, *notes: str) -> audit.LogReport:
    with world.sessions() as s, s.begin():
        sequencer.integrate(s)
    with world.sessions() as s:
        cps = [(f"cp{i}", checkpoint.parse_checkpoint(n, [signer.verifier], origin=ORIGIN)) for i, n in enumerate(notes, 1)]
        return audit.verify_log(s, cps)


def _chains_ok(world: World) -> bool:
    with world.sessions() as s:
        report = audit.verify(s)
    assert report.ok, [str(p) for p in report.problems]
    return True


def _case(world: World, branch: str) -> tuple[int, str]:
    with world.sessions() as s:
        cid, camp = s.execute(text("SELECT c.id, cp.code FROM cases c JOIN branches b ON b.id = c.branch_id "
                                   "JOIN campaigns cp ON cp.id = c.campaign_id WHERE b.code = :b"), {"b": branch}).one()
    return int(cid), str(camp)


def rewrite_chain(world: World, branch: str, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
    """What a DBA can do: edit the events, recompute every hash with the same rule, rebuild the projection."""
    cid, camp = _case(world, branch)
    with world.sessions() as s, s.begin():
        rows = s.execute(text("SELECT id, body FROM events WHERE case_id = :c ORDER BY seq"), {"c": cid}).all()
        ids = [r[0] for r in rows]
        events = edit([json.loads(r[1]) for r in rows])
        s.execute(text("UPDATE events SET seq = -seq WHERE case_id = :c"), {"c": cid})
        keep = ids[: len(events)]
        for gone in ids[len(events):]:
            s.execute(text("DELETE FROM events WHERE id = :i"), {"i": gone})
        prev = GENESIS
        for seq, (eid, ev) in enumerate(zip(keep, events, strict=True), 1):
            body = canonical(ev)
            h = chain(prev, body)
            s.execute(text("UPDATE events SET seq = :q, body = :b, prev_hash = :p, hash = :h, actor = :a, kind = :k "
                           "WHERE id = :i"), {"q": seq, "b": body, "p": prev, "h": h, "a": ev["actor"],
                                              "k": ev["kind"], "i": eid})
            prev = h
        state = replay(camp, branch, events)
        deadline = effective_deadline(campaign_of(get_campaign_row(s, camp)), state)
        s.execute(update(CaseRow).where(CaseRow.id == cid).values(
            state=state, stage=state["stage"], grade=current_grade(state), version=len(events), deadline=deadline))


def _failed(report: audit.LogReport, name: str) -> str:
    got = dict(report.results)[name]
    assert got is not None, f"{name} should not verify: {report}"
    return got


def test_untouched_log_is_consistent_with_its_checkpoints(logged: tuple[World, checkpoint.Signer, str]) -> None:
    world, signer, cp1 = logged
    world.drive("B3", Stage.member_evaluation)
    cp2 = _checkpoint(world, signer)
    rep = _verify_log(world, signer, cp1, cp2)
    assert rep.ok, rep
    assert rep.results == [("cp1", None), ("cp2", None)]
    assert _chains_ok(world)


def test_signature_rewrite_with_all_hashes_and_projection_recomputed(logged: tuple[World, checkpoint.Signer, str]) -> None:
    world, signer, cp1 = logged
    signed_seq: list[int] = []

    def forge(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, ev in enumerate(evs):
            if ev["kind"] == "signed" and ev["actor"] == MEMBERS[0]:
                ev["actor"] = "impostor@test.cn"
                ev["payload"]["name"] = "冒名者"
                signed_seq.append(i + 1)
                break
        return evs

    rewrite_chain(world, "B1", forge)
    assert signed_seq
    assert _chains_ok(world)  # the per-branch chains alone cannot see it: that is what the log is for
    problem = _failed(_verify_log(world, signer, cp1), "cp1")
    assert "不是检查点" in problem and f"B1 事件 #{signed_seq[0]}" in problem


def test_deleted_tail_with_projection(logged: tuple[World, checkpoint.Signer, str]) -> None:
    world, signer, cp1 = logged
    rewrite_chain(world, "B1", lambda evs: evs[:-2])
    assert _chains_ok(world)
    rep = _verify_log(world, signer, cp1)
    assert not rep.ok
    assert "删除" in " ".join(rep.problems) or "截断" in _failed(rep, "cp1")
    _failed(rep, "cp1")


def test_reordered_pair(logged: tuple[World, checkpoint.Signer, str]) -> None:
    world, signer, cp1 = logged

    def swap(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        evs[1], evs[2] = evs[2], evs[1]  # the two survey records
        return evs

    rewrite_chain(world, "B2", swap)
    assert _chains_ok(world)
    assert "B2 事件 #2" in _failed(_verify_log(world, signer, cp1), "cp1")


def test_master_fact_edited_directly_is_reported(logged: tuple[World, checkpoint.Signer, str]) -> None:
    world, _, _ = logged
    with world.sessions() as s, s.begin():
        s.execute(text("UPDATE branches SET secretary_violation = :t WHERE code = 'B3'"), {"t": True})
    with world.sessions() as s:
        report = audit.verify(s)
    assert [(p.branch, "secretary_violation" in p.problem) for p in report.problems] == [("branch:B3", True)]


def test_master_fact_edited_with_its_record_rewritten(logged: tuple[World, checkpoint.Signer, str]) -> None:
    world, signer, cp1 = logged
    with world.sessions() as s, s.begin():
        s.execute(text("UPDATE branches SET secretary_violation = :t WHERE code = 'B3'"), {"t": True})
        mid, body, prev = s.execute(text("SELECT id, body, prev_hash FROM master_events WHERE subject = 'branch:B3' "
                                         "ORDER BY seq DESC")).first()  # type: ignore[misc]
        ev = json.loads(body)
        ev["data"]["secretary_violation"] = True
        nb = canonical(ev)
        s.execute(text("UPDATE master_events SET body = :b, hash = :h WHERE id = :i"),
                  {"b": nb, "h": chain(prev, nb), "i": mid})
    assert _chains_ok(world)
    assert "基础数据 branch:B3" in _failed(_verify_log(world, signer, cp1), "cp1")


def _reissue_log(world: World) -> None:
    """A server that rebuilds its whole tree from rewritten rows, so its own hashes agree again."""
    with world.sessions() as s, s.begin():
        for t in ("events", "campaign_changes", "master_events"):
            s.execute(text(f"UPDATE {t} SET leaf_idx = NULL"))
        s.execute(text("DELETE FROM merkle_hashes"))
        s.execute(text("UPDATE log_head SET size = 0"))
        sequencer.integrate(s)


def test_fork_two_auditors_two_logs(logged: tuple[World, checkpoint.Signer, str]) -> None:
    world, signer, cp1 = logged

    def forge(evs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        evs[-1]["actor"] = MEMBERS[2]
        return evs

    rewrite_chain(world, "B2", forge)
    _reissue_log(world)
    cp_other = _checkpoint(world, signer)  # signed with the real key: the server is the one lying
    assert checkpoint.parse_checkpoint(cp_other, [signer.verifier]).size == \
        checkpoint.parse_checkpoint(cp1, [signer.verifier]).size
    rep = _verify_log(world, signer, cp1, cp_other)
    assert any("分叉" in p for p in rep.problems)
    assert "不是检查点" in _failed(rep, "cp1")
    # and a later checkpoint of the forked log is inconsistent with the first auditor's earlier one
    world.drive("B4", Stage.self_assessment)
    cp_later = _checkpoint(world, signer)
    rep = _verify_log(world, signer, cp1, cp_later)
    assert dict(rep.results)["cp2"] is None
    _failed(rep, "cp1")


def test_checkpoint_with_a_bad_signature(logged: tuple[World, checkpoint.Signer, str]) -> None:
    _, signer, cp1 = logged
    lines = cp1.split("\n")
    lines[1] = str(int(lines[1]) + 1)
    with pytest.raises(checkpoint.CheckpointError, match="签名无效"):
        checkpoint.parse_checkpoint("\n".join(lines), [signer.verifier])


def test_checkpoint_from_another_key(logged: tuple[World, checkpoint.Signer, str]) -> None:
    world, signer, _ = logged
    other = checkpoint.generate(ORIGIN)
    note = _checkpoint(world, other)
    with pytest.raises(checkpoint.CheckpointError, match="不是由受信任的密钥签名"):
        checkpoint.parse_checkpoint(note, [signer.verifier])


def test_inclusion_proof_of_every_event_of_a_branch(logged: tuple[World, checkpoint.Signer, str]) -> None:
    world, signer, cp1 = logged
    with world.sessions() as s:
        cp = checkpoint.parse_checkpoint(cp1, [signer.verifier])
        n = s.execute(text("SELECT count(*) FROM events e JOIN cases c ON c.id = e.case_id JOIN branches b "
                           "ON b.id = c.branch_id WHERE b.code = 'B1'")).scalar_one()
        for seq in range(1, n + 1):
            e = sequencer.event_entry(s, "B1", seq)
            proof = merkle.prove_inclusion(cp.size, e.leaf_idx, sequencer.DbHashes(s))
            merkle.check_inclusion(proof, cp.size, cp.root, e.leaf_idx, merkle.leaf_hash(e.data))


def test_verify_keeps_checking_after_the_first_bad_event_and_names_every_bad_chain(
        logged: tuple[World, checkpoint.Signer, str]) -> None:
    world, _, _ = logged
    with world.sessions() as s, s.begin():
        for b, seq in (("B1", 3), ("B1", 6), ("B2", 4)):
            s.execute(text("UPDATE events SET body = replace(body, '\"stage\"', '\"stage\" ') WHERE seq = :q AND "
                           "case_id = (SELECT c.id FROM cases c JOIN branches b ON b.id = c.branch_id WHERE b.code = :b)"),
                      {"q": seq, "b": b})
    with world.sessions() as s:
        report = audit.verify(s)
    bad = sorted({(p.branch, p.seq) for p in report.problems if p.seq is not None})
    assert bad == [("B1", 3), ("B1", 6), ("B2", 4)]
    with world.sessions() as s:
        assert report.events == s.execute(text("SELECT count(*) FROM events")).scalar_one()  # all counted

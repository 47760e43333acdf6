"""HTTP API of the Merkle log (issue 11): checkpoints, inclusion and consistency proofs.

Open to auditors and to committee-level staff (the people who may verify every branch).
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.api import ERRORS, Token, _actor
from service.app import runtime
from service.auth import sees_everything
from workflow import merkle, sequencer
from workflow.errors import Forbidden, InvalidInput, NotFound
from workflow.models import CheckpointRow
from workflow.service import Actor

router = APIRouter(prefix="/api/audit", tags=["审计"], responses=ERRORS)


def _auditor(s: Session, actor: Actor) -> None:
    if not sees_everything(s, actor):
        raise Forbidden("默克尔日志的检查点和证明只对审计人员和党委层面人员开放")


def _checkpoint(s: Session, size: int | None) -> CheckpointRow:
    q = select(CheckpointRow).order_by(CheckpointRow.id.desc()).limit(1)
    if size is not None:
        q = q.where(CheckpointRow.size == size)
    row = s.scalars(q).first()
    if row is None:
        raise NotFound("还没有检查点" if size is None else f"没有大小为 {size} 的检查点")
    return row


@router.get("/checkpoint", response_class=PlainTextResponse,
            responses={k: {**v, "content": {"application/json": {}}} for k, v in ERRORS.items()},
            summary="最新的签名检查点（C2SP tlog-checkpoint 文本）")
def latest_checkpoint(request: Request, token: Token) -> PlainTextResponse:
    rt = runtime(request)
    with rt.tx() as s:
        _auditor(s, _actor(rt, s, token))
        return PlainTextResponse(_checkpoint(s, None).note)


@router.get("/checkpoints", summary="已保存的检查点")
def list_checkpoints(request: Request, token: Token,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    rt = runtime(request)
    with rt.tx() as s:
        _auditor(s, _actor(rt, s, token))
        rows = s.scalars(select(CheckpointRow).order_by(CheckpointRow.id.desc()).limit(limit)).all()
        return [{"id": r.id, "size": r.size, "root_hash": r.root_hash, "reason": r.reason,
                 "made_at": r.made_at.isoformat(), "note": r.note} for r in rows]


@router.get("/proof/{branch}/{seq}", summary="一条事件在检查点中的包含证明")
def inclusion_proof(request: Request, token: Token, branch: Annotated[str, Path(max_length=64)],
                    seq: Annotated[int, Path(ge=1, le=1_000_000)],
                    campaign: Annotated[str | None, Query(max_length=64)] = None,
                    size: Annotated[int | None, Query(ge=1)] = None) -> dict[str, Any]:
    rt = runtime(request)
    with rt.tx() as s:
        _auditor(s, _actor(rt, s, token))
        return proof_for(s, branch, seq, campaign, size)


def proof_for(s: Session, branch: str, seq: int, campaign: str | None, size: int | None) -> dict[str, Any]:
    from service.cli_audit import proof_json

    cp = _checkpoint(s, size)
    entry = sequencer.event_entry(s, branch, seq, campaign)
    if entry.leaf_idx >= cp.size:
        raise NotFound(f"{entry.where} 在该检查点（大小 {cp.size}）之后才写入日志：请用更新的检查点")
    proof = merkle.prove_inclusion(cp.size, entry.leaf_idx, sequencer.DbHashes(s))
    return proof_json(entry, cp.note, cp.size, proof)


@router.get("/consistency", summary="两个树大小之间的一致性证明")
def consistency_proof(request: Request, token: Token, from_: Annotated[int, Query(alias="from", ge=0)],
                      to: Annotated[int | None, Query(ge=1)] = None) -> dict[str, Any]:
    rt = runtime(request)
    with rt.tx() as s:
        _auditor(s, _actor(rt, s, token))
        cp = _checkpoint(s, to)
        if from_ > cp.size:
            raise InvalidInput(f"from={from_} 大于检查点的树大小 {cp.size}")
        proof = merkle.prove_consistency(cp.size, from_, sequencer.DbHashes(s))
        return {"old_size": from_, "new_size": cp.size, "checkpoint": cp.note,
                "consistency_proof": [base64.b64encode(h).decode() for h in proof]}



"""The web audit page's Merkle-log part (issue 11): the latest checkpoint, checking the checkpoints an
auditor pastes against today's log, and an inclusion proof download for any event."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from service.app import runtime
from service.auth import sees_everything
from service.web import _page_actor, render
from workflow import audit, checkpoint
from workflow.errors import BranchflowError, Forbidden, InvalidInput

router = APIRouter(include_in_schema=False)
MAX_PASTE = 20_000


def split_notes(text: str) -> list[str]:
    """Pasted text → the signed notes in it (each ends with its run of signature lines)."""
    notes, cur, in_sigs = [], [], False
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line.startswith(checkpoint.DASH):
            cur.append(line)
            in_sigs = True
            continue
        if in_sigs:
            notes.append("\n".join(cur) + "\n")
            cur, in_sigs = [], False
        if line.strip() or cur:
            cur.append(line.rstrip(" \t") if line.strip() else "")
    if in_sigs:
        notes.append("\n".join(cur) + "\n")
    return notes


def _guard(s: Any, actor: Any) -> None:
    if not sees_everything(s, actor):
        raise Forbidden("默克尔日志与检查点只对审计人员和党委层面人员开放")


@router.get("/audit/log", response_class=HTMLResponse)
def audit_log_page(request: Request) -> Response:
    rt = runtime(request)
    pasted = request.query_params.get("checkpoints") or ""
    ctx: dict[str, Any] = {"latest": None, "pasted": pasted, "results": None, "log_problems": [], "log_size": None}
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        error = None
        status = 200
        try:
            _guard(s, actor)
            ctx["latest"] = checkpoint.latest(s)
            if pasted.strip():
                if len(pasted) > MAX_PASTE:
                    raise InvalidInput(f"粘贴的内容过长（最多 {MAX_PASTE} 个字符）")
                path = rt.settings.audit_key_path
                if not path.exists():
                    raise InvalidInput("本系统尚未配置签名密钥（branchflow audit keygen），无法校验检查点的签名")
                keys = [checkpoint.load_signer(path).verifier]
                notes = split_notes(pasted)
                if not notes:
                    raise InvalidInput("没有找到检查点：请粘贴包括签名行（以“— ”开头）在内的完整检查点")
                good, results = [], []
                for i, note in enumerate(notes, 1):
                    try:
                        good.append((f"第 {i} 个检查点", checkpoint.parse_checkpoint(note, keys,
                                                                                 origin=rt.settings.audit_origin)))
                    except checkpoint.CheckpointError as exc:
                        results.append((f"第 {i} 个检查点", f"无效——{exc.message}"))
                rep = audit.verify_log(s, good)
                results = [(n, "一致：今天的日志是它的追加延续" if r is None else f"不一致——{r}")
                           for n, r in rep.results] + results
                ctx["results"] = sorted(results)
                ctx["log_problems"] = rep.problems
                ctx["log_size"] = rep.size
        except BranchflowError as exc:
            error = {"message": exc.message, "unmet": [], "lines": [], "action": "audit"}
            status = exc.http_status
    return render(request, "audit_log.html", {**ctx, "error": error}, status=status, actor=actor)


@router.get("/audit/proof")
def audit_proof_download(request: Request) -> Response:
    from service.api_audit import proof_for

    rt = runtime(request)
    qp = request.query_params
    branch = (qp.get("branch") or "").strip()
    try:
        seq = int(qp.get("seq") or "")
    except ValueError:
        raise InvalidInput("事件序号须为正整数") from None
    if not branch or seq < 1:
        raise InvalidInput("请填写党支部编码和事件序号")
    with rt.tx() as s:
        _guard(s, _page_actor(rt, s, request))
        data = proof_for(s, branch, seq, None, None)
    body = json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    return Response(body, media_type="application/json; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="proof-{branch}-{seq}.json"'})

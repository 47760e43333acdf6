"""The branch page: its card, timeline and history, the current stage's form and every action on it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from service import application
from service.app import runtime
from service.application import TZ
from service.auth import (
    NotAuthenticated,
    require_see,
)
from service.files import blob_store, read_uploads
from service.pages import kept
from service.pages.committee import _committee_ctx
from service.pages.common import (
    _f,
    _form,
    _number,
    _page_actor,
    _reminder_days,
    _role_flags,
    _safe_next,
    redirect_with_notice,
    render,
)
from service.pages.fields import fields_of
from service.pages.publicity import _publicity_ctx
from service.pages.record import person_names
from service.pages.wayout import marked_fields, ways_out
from states import spec_for
from states.base import WORKING_STAGES, Role, Stage
from states.survey import FOCUS_POINTS
from workflow import audit, service, views
from workflow.attachments import store_all
from workflow.blobs import BlobStore
from workflow.errors import BranchflowError, InvalidInput, TransitionRefused
from workflow.models import Committee, GeneralBranch
from workflow.repository import LoadedCase, load_case
from workflow.service import Actor

router = APIRouter(include_in_schema=False)

# --- branch page ------------------------------------------------------------------------------------

def _permissions(actor: Actor, case: LoadedCase) -> dict[str, bool]:
    stage = case.stage
    if stage is Stage.accepted:
        return dict.fromkeys(("record", "advance", "grade", "sign", "publish", "resolve", "object", "complete",
                              "extend"), False)
    spec = spec_for(stage)
    committee = service.may(actor, [Role.committee_member, Role.org_department], case)
    return {
        "record": spec.record_model is not None and service.may(actor, spec.recorders, case)
        or (stage is Stage.acceptance and service.may(actor, spec.recorders, case)),
        "advance": service.may(actor, spec.advancers, case),
        "grade": stage is Stage.committee_grading and committee,
        "sign": stage is Stage.committee_grading and service.may(actor, [Role.committee_member], case),
        "publish": stage is Stage.publicity and service.may(actor, [Role.org_department], case),
        "resolve": stage is Stage.publicity and service.may(actor, [Role.org_department], case),
        "object": stage is Stage.publicity and not _role_flags(actor)["auditor_only"],
        "complete": stage is Stage.rectification and service.may(actor, [Role.branch_secretary], case),
        "extend": service.may(actor, [Role.org_department], case),
    }


def _form_values(case: LoadedCase) -> dict[str, str]:
    """The current stage's recorded data as form field values (so the form opens filled in)."""
    rec = case.state["records"].get(case.stage.value, {})
    v: dict[str, str] = {}
    if case.stage is Stage.survey:
        for k, f in rec.get("findings", {}).items():
            v[f"f_{k}"] = "yes" if f.get("ok") else "no"
            v[f"n_{k}"] = f.get("note", "")
        for k in ("last_reelection", "last_activity"):
            v[k] = rec.get(k) or ""
        if rec.get("secretary_violation") is not None:
            v["secretary_violation"] = "yes" if rec["secretary_violation"] else "no"
    elif case.stage is Stage.self_assessment:
        for k, sc in rec.get("scores", {}).items():
            v[f"s_{k}"] = f"{sc:g}"
        v["meeting_date"] = rec.get("meeting_date") or ""
        v["attendance"] = str(rec["attendance"]) if rec.get("attendance") is not None else ""
        v["comment"] = rec.get("comment", "")
    elif case.stage is Stage.member_evaluation:
        t = rec.get("tally") or {}
        if t:
            v.update(ballots=str(t["ballots"]), rating=f"{t['rating']:g}",
                     sat_members=f"{t['satisfaction_members'] * 100:g}", sat_secretary=f"{t['satisfaction_secretary'] * 100:g}")
        for k in ("peer", "superior"):
            if rec.get(k) is not None:
                v[k] = f"{rec[k]:g}"
    elif case.stage is Stage.rectification:
        for i, it in enumerate(rec.get("items", []), 1):
            v.update({f"problem_{i}": it["problem"], f"measure_{i}": it["measure"], f"due_{i}": it["due"],
                      f"contact_{i}": it["contact"]})
        v["self_analysis"] = rec.get("self_analysis") or ""
    return v


def _org_names(s: Session, case: LoadedCase) -> dict[str, str]:
    """The committee's and the general branch's names (the page shows names, never codes)."""
    out = {"committee": s.scalar(select(Committee.name).where(Committee.code == case.committee_code)) or ""}
    if case.general_branch_code:
        out["general_branch"] = s.scalar(select(GeneralBranch.name)
                                         .where(GeneralBranch.code == case.general_branch_code)) or ""
    return out


def _branch_context(s: Session, actor: Actor, code: str, now: dt.datetime, *,
                    show_system: bool = False) -> dict[str, Any]:
    require_see(s, actor, code)
    case = load_case(s, code)
    card = views.card(case, now, reveal_objectors=views.may_know_objectors(actor, case))
    hist = views.history(s, code, actor=actor)
    rubric = case.campaign.grading.rubric_for(case.facts.branch_type)
    entered = {e["payload"]["to"]: e["at"] for e in hist["events"] if e["kind"] == "moved"}
    timeline = []
    for st in WORKING_STAGES:
        status = "done" if st.number < case.stage.number else "current" if st is case.stage else "todo"
        timeline.append({"stage": st, "status": status, "deadline": case.campaign.deadline_for(st),
                         "entered": entered.get(st.value)})
    events = []
    hidden_system = sum(1 for e in hist["events"] if e["system"])
    for e in reversed(hist["events"]):
        if e["system"] and not show_system:
            continue
        local = audit.parse_iso(e["at"]).astimezone(TZ)
        events.append({**e, "local": local.strftime("%Y-%m-%d %H:%M"), "stage_label": Stage(e["stage"]).label})
    perm = _permissions(actor, case)
    return {
        "card": card, "case": case, "perm": perm, "timeline": timeline, "events": events,
        "ways": ways_out(card["unmet"], perm), "org": _org_names(s, case), "show_system": show_system,
        "system_count": hidden_system, "names": person_names(s, {x["member"] for x in case.state["signatures"]}),
        "rubric": rubric, "focus_points": FOCUS_POINTS, "values": _form_values(case),
        "bands": case.campaign.grading.scale.bands, "plan_rows": range(1, 6),
        "band_labels": {b.code: b.grade for b in case.campaign.grading.scale.bands}, "invalid": set(),
        "signed": any(x["member"] == actor.email for x in case.state["signatures"]),
        "due_soon": card["days_left"] is not None and 0 <= card["days_left"] <= _reminder_days(case.campaign),
    }


@router.get("/branches/{code}", response_class=HTMLResponse)
def branch_page(code: str, request: Request) -> Response:
    rt = runtime(request)
    now = rt.clock()
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        ctx = _branch_context(s, actor, code, now, show_system=request.query_params.get("system") == "1")
    restored = kept.take(request, actor.email, request.url.path)  # typed before the session ended (issue 16)
    if restored is not None:
        ctx = {**ctx, "values": {**ctx["values"], **restored}, "notice": kept.RESTORED}
    resp = render(request, "branch.html", ctx, actor=actor)
    if request.cookies.get(kept.KEPT_COOKIE) and restored is not None:
        kept.forget(resp)
    return resp


def stage_data(case: LoadedCase, form: FormData) -> dict[str, Any]:
    """The current stage's form fields as the record the service validates (empty fields are left out)."""
    st = case.stage
    data: dict[str, Any] = {}
    if st is Stage.survey:
        findings = {}
        for k in FOCUS_POINTS:
            ans = _f(form, f"f_{k}")
            if ans in ("yes", "no"):
                findings[k] = {"ok": ans == "yes", "note": _f(form, f"n_{k}")}
        data["findings"] = findings
        for k in ("last_reelection", "last_activity"):
            if _f(form, k):
                data[k] = _f(form, k)
        if _f(form, "secretary_violation") in ("yes", "no"):
            data["secretary_violation"] = _f(form, "secretary_violation") == "yes"
    elif st is Stage.self_assessment:
        rubric = case.campaign.grading.rubric_for(case.facts.branch_type)
        scores = {}
        for item in rubric.items:
            n = _number(form, f"s_{item.id}", f"第 {item.id} 项得分")
            if n is not None:
                scores[item.id] = n
        data["scores"] = scores
        if _f(form, "meeting_date"):
            data["meeting_date"] = _f(form, "meeting_date")
        att = _number(form, "attendance", "到会人数", integer=True)
        if att is not None:
            data["attendance"] = att
        if _f(form, "comment"):
            data["comment"] = _f(form, "comment")
    elif st is Stage.member_evaluation:
        ballots = _number(form, "ballots", "有效票数", integer=True)
        rating = _number(form, "rating", "平均评分")
        sm = _number(form, "sat_members", "群众对党员发挥作用满意率")
        ss = _number(form, "sat_secretary", "支部书记在党员中满意率")
        given = [x is not None for x in (ballots, rating, sm, ss)]
        if any(given):
            if not all(given):
                raise InvalidInput("测评汇总须同时填写有效票数、平均评分和两项满意率")
            data["tally"] = {"ballots": ballots, "rating": rating, "satisfaction_members": sm / 100,  # type: ignore[operator]
                             "satisfaction_secretary": ss / 100}  # type: ignore[operator]
        for k, label in (("peer", "分类互评得分"), ("superior", "上级考评得分")):
            n = _number(form, k, label)
            if n is not None:
                data[k] = n
    elif st is Stage.rectification:
        items = []
        for i in range(1, 6):
            row = {k: _f(form, f"{k}_{i}") for k in ("problem", "measure", "due", "contact")}
            if any(row.values()):
                items.append(row)
        if items:
            data["items"] = items
        if _f(form, "self_analysis"):
            data["self_analysis"] = _f(form, "self_analysis")
        if _f(form, "submitted"):
            data["submitted"] = True
    elif st is Stage.acceptance:
        data = {"passed": _f(form, "passed") == "yes", "summary": _f(form, "summary"),
                "inspected_on": _f(form, "inspected_on") or None,
                "regrade_score": _number(form, "regrade_score", "再次定级得分")}
        if _f(form, "new_deadline"):
            data["new_deadline"] = _f(form, "new_deadline")
    return data


ACTIONS = ("record", "record_advance", "advance", "grade", "adjust", "sign", "publish", "object", "resolve",
           "complete", "extend")


def perform(s: Session, actor: Actor, code: str, action: str, form: FormData, now: dt.datetime,
            store: BlobStore | None = None) -> str:
    """Run the form's action; raises (and the caller's transaction rolls back) when anything is refused.
    ``store``: where the form's files go (issue 16), after their record was appended, before the commit."""
    if action not in ACTIONS:
        raise InvalidInput(f"未知的操作 {action!r}")
    public = action == "object"  # the publicity is public; anything else: as require_see
    application.guard(s, actor, code, public=public)

    def run(use_case: Callable[..., LoadedCase], *args: Any, **kw: Any) -> LoadedCase:
        return application.act(s, actor, code, use_case, *args, now=now, public=public, **kw)

    version = _number(form, "version", "版本", integer=True)
    case = load_case(s, code)
    if action in ("record", "record_advance"):
        data = stage_data(case, form)
        files = read_uploads(form) if store is not None else []
        recorded = run(service.record, data, expected_version=version, files=files)
        if files and store is not None:
            store_all(store, files)
        if action == "record":
            return "已保存"
        if recorded.stage is not case.stage:  # a failed inspection has already sent it back: nothing to advance
            return f"已记录，党支部退回“{recorded.stage.label}”环节"
        case = run(service.advance)
        return f"已提交，党支部进入“{case.stage.label}”环节"
    if action == "advance":
        case = run(service.advance, expected_version=version)
        return f"已推进到“{case.stage.label}”环节"
    if action == "grade":
        case = run(service.compute_grade)
        return f"已计算：总分 {case.state['grade']['total']:g}，等级 {case.state['grade']['grade_label']}"
    if action == "adjust":
        run(service.adjust_grade, _f(form, "grade"), _f(form, "reason"))
        return "等级已调整（须重新签字）"
    if action == "sign":
        case = run(service.sign)
        return f"已签字（{len(case.state['signatures'])}/{case.campaign.quorum_for(case.facts.committee_size)}）"
    if action == "publish":
        start = _f(form, "start")
        try:
            d = dt.date.fromisoformat(start) if start else None
        except ValueError:
            raise InvalidInput(f"公示开始日期“{start}”不是日期") from None
        case = run(service.publish, start=d)
        return f"已发布公示：{case.state['publicity']['start']} 至 {case.state['publicity']['end']}"
    if action == "object":
        from notifications import receipts  # the objector's receipt code (issue 16, point 5)

        case, receipt = receipts.lodge(s, code, actor, _f(form, "text"), now=now)  # guarded above (public)
        return receipts.shown(case, receipt)
    if action == "resolve":
        oid = _number(form, "objection", "异议编号", integer=True)
        verdict = _f(form, "verdict")
        if oid is None or verdict not in ("upheld", "dismissed"):
            raise InvalidInput("请选择要处理的异议及处理结果（成立 / 不成立）")
        run(service.resolve_objection, int(oid), upheld=verdict == "upheld", reason=_f(form, "reason"))
        return "异议成立，已退回党委评定" if verdict == "upheld" else "异议不成立，已记录"
    if action == "complete":
        item = _number(form, "item", "整改事项编号", integer=True)
        if item is None:
            raise InvalidInput("请选择整改事项")
        files = read_uploads(form) if store is not None else []
        run(service.complete_item, int(item), _f(form, "evidence"), files=files)
        if files and store is not None:
            store_all(store, files)
        return f"第 {item} 项已登记完成"
    until = _f(form, "deadline")
    try:
        d = dt.date.fromisoformat(until)
    except ValueError:
        raise InvalidInput(f"新的截止日期“{until}”不是日期（格式 2026-04-18）") from None
    run(service.extend_deadline, d, _f(form, "reason"))
    return f"截止日期已延至 {d}"


@router.post("/branches/{code}", response_class=HTMLResponse)
async def branch_act(code: str, request: Request) -> Response:
    form = await _form(request)
    rt = runtime(request)
    now = rt.clock()
    action = _f(form, "action")
    back = _safe_next(_f(form, "back") or f"/branches/{quote(code)}")

    def run() -> tuple[str | None, BranchflowError | None, Actor]:
        actor: Actor | None = None
        try:
            with rt.tx() as s:  # one transaction: everything the form asked for, or nothing
                actor = _page_actor(rt, s, request)
                message = perform(s, actor, code, action, form, now, store=blob_store(request))
            return message, None, actor
        except BranchflowError as exc:
            if actor is None or isinstance(exc, NotAuthenticated):
                raise
            return None, exc, actor

    try:
        message, error, actor = await run_in_threadpool(run)
    finally:
        await form.close()  # the temporary files of uploads (issue 16); the text fields stay readable
    if error is None:
        return await run_in_threadpool(redirect_with_notice, request, f"{back}#top", message or "")
    return await run_in_threadpool(_show_again, request, actor, code, action, form, error, now, back)


def _show_again(request: Request, actor: Actor, code: str, action: str, form: FormData, error: BranchflowError,
                now: dt.datetime, back: str) -> Response:
    """The page the form came from, again, with the error beside the form and the person's input kept."""
    rt = runtime(request)
    err = {"message": error.message.split("\n")[0], "unmet": getattr(error, "unmet", []), "action": action,
           "lines": [ln.strip() for ln in error.message.split("\n")[1:] if ln.strip() and not ln.strip().startswith("- ")]}
    if isinstance(error, TransitionRefused) and not err["unmet"]:
        err["lines"] = [ln.strip() for ln in error.message.split("\n")[1:] if ln.strip()]
    with rt.tx() as s:
        if back.startswith("/committee"):  # the unmet criteria say who must act (the forms are per branch there)
            err["unmet"] = ways_out(list(getattr(error, "unmet", [])), {})
            return render(request, "committee.html", {**_committee_ctx(s, actor, now), "error": err},
                          status=error.http_status, actor=actor)
        if back.startswith("/publicity"):
            return render(request, "publicity.html", {**_publicity_ctx(s, now), "error": err, "err_code": code,
                                                      "text": _f(form, "text")}, status=error.http_status, actor=actor)
        try:
            ctx = _branch_context(s, actor, code, now, show_system="system=1" in back)
        except BranchflowError:
            return render(request, "error.html", {"title": "无法完成", "message": error.message},
                          status=error.http_status, actor=actor)
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    refused: list[Any] = list(getattr(error, "unmet", []))
    ctx["invalid"] = fields_of(error) | marked_fields(refused)  # from the error's locations, not its words
    err["unmet"] = ways_out(refused, ctx["perm"])  # each refusal with its way out on this page
    owner = {"record": "record", "record_advance": "record", "advance": "advance", "grade": "grade", "adjust": "grade",
             "sign": "grade", "publish": "publish", "resolve": "resolve", "complete": "complete", "extend": "extend"}
    err["top"] = not ctx["perm"].get(owner.get(action, ""), False)  # no form to show it beside: show it on top
    return render(request, "branch.html", {**ctx, "values": values, "error": err}, status=error.http_status,
                  actor=actor)

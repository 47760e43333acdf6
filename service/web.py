"""The pages (Jinja2, Chinese, usable on a phone): log-in, to-do list, dashboard, branch page, committee
sign-off, public publicity page with the objection form, audit page.

Every form carries a CSRF token; every POST runs one use case (or a record and an advance together) in
one transaction, so a refused form changes nothing and the page is shown again with the error in place
and the person's input kept.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import secrets
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import case as sql_case
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

import reports
from reports import charts as reports_charts
from service import sessions as web_sessions
from service.app import TEMPLATES, Runtime, runtime
from service.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    NotAuthenticated,
    Throttled,
    csrf_binding,
    log_in,
    require_public_or_see,
    require_see,
    sees_everything,
    visible_cases,
)
from service.security import cookie_secure
from states import spec_for
from states.base import ROLE_LABELS, WORKING_STAGES, Role, Stage
from states.survey import FOCUS_POINTS
from workflow import audit, limits, service, views
from workflow.errors import BranchflowError, Forbidden, InvalidInput, NotFound, TransitionRefused
from workflow.models import Branch, CaseRow, Committee, GeneralBranch
from workflow.repository import LoadedCase, campaign_of, get_campaign_row, load_case
from workflow.service import Actor

from .api import TZ, parse_time, report_scope

router = APIRouter(include_in_schema=False)
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
templates = Jinja2Templates(env=_env)

# What each role owes, stage by stage: the to-do list shows the visible cases standing in these stages.
OWED: dict[Role, tuple[Stage, ...]] = {
    Role.branch_secretary: (Stage.self_assessment, Stage.rectification),
    Role.general_branch_secretary: (Stage.survey, Stage.member_evaluation, Stage.acceptance),
    Role.committee_member: (Stage.committee_grading,),
    Role.org_department: (Stage.committee_grading, Stage.publicity),
    Role.auditor: (),
}
TODO_LIMIT = 200


# --- plumbing ---------------------------------------------------------------------------------------

def _csrf_nonce(request: Request) -> tuple[str, bool]:
    nonce = request.cookies.get(CSRF_COOKIE)
    if nonce and 16 <= len(nonce) <= 128:
        return nonce, False
    return secrets.token_urlsafe(24), True


# ``?ok=KEY`` shows a site notice only from this fixed set; ``done`` shows the result of the person's last
# form, kept in their server-side session (never text from the URL).
NOTICES = {"logged_out": "您已退出登录", "done": ""}


def _notice(request: Request) -> str | None:
    key = request.query_params.get("ok")
    if key == "done":
        return getattr(request.state, "bf_notice", None)
    return NOTICES.get(key or "") or None


def render(request: Request, name: str, ctx: dict[str, Any], status: int = 200,
           actor: Actor | None = None) -> HTMLResponse:
    rt = runtime(request)
    nonce, new = _csrf_nonce(request)
    binding = csrf_binding(request.cookies.get(SESSION_COOKIE), nonce)  # as _form will compute it
    base = {"request": request, "me": actor, "csrf": rt.signer.csrf_for(binding or ""), "roles": _role_flags(actor),
            "now_local": rt.clock().astimezone(TZ), "error": None, "notice": _notice(request),
            "ROLE_LABELS": ROLE_LABELS}
    resp = templates.TemplateResponse(request, name, {**base, **ctx}, status_code=status)
    if new:
        resp.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="lax", path="/", secure=cookie_secure(request))
    return resp


def redirect_with_notice(request: Request, target: str, text: str) -> Response:
    """Redirect after a successful form; the message waits in the person's session for the next page."""
    rt = runtime(request)
    raw = request.cookies.get(SESSION_COOKIE) or ""
    with rt.tx() as s:
        row = web_sessions._live(s, raw)
        if row is not None and row.ended_at is None:
            web_sessions.set_notice(row, text)
    base, _, frag = target.partition("#")
    sep = "&" if "?" in base else "?"
    return RedirectResponse(f"{base}{sep}ok=done" + (f"#{frag}" if frag else ""), status_code=303)


def _role_flags(actor: Actor | None) -> dict[str, bool]:
    kinds = {r for r, _ in actor.roles} if actor else set()
    return {
        "reports": bool(kinds & {Role.auditor, Role.committee_member, Role.org_department,
                                 Role.general_branch_secretary}),
        "committee": bool(kinds & {Role.committee_member, Role.org_department}),
        "audit": bool(kinds & {Role.auditor, Role.committee_member, Role.org_department}),
        "auditor_only": kinds == {Role.auditor},
    }


def error_page(request: Request, exc: BranchflowError) -> Response:
    if isinstance(exc, NotAuthenticated):
        if exc.ended is not None:
            with runtime(request).tx() as s:
                web_sessions.settle(s, exc)
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    return render(request, "error.html", {"title": "无法完成", "message": exc.message}, status=exc.http_status)


def _page_actor(rt: Runtime, s: Session, request: Request) -> Actor:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise NotAuthenticated("请先登录")
    actor, row = web_sessions.read_session(s, token, now=rt.signer.wall(), policy=rt.signer.policy)
    if request.query_params.get("ok") == "done" and row.notice is not None:
        request.state.bf_notice = web_sessions.pop_notice(s, row)
    return actor


def _optional_actor(rt: Runtime, s: Session, request: Request) -> Actor | None:
    try:
        return _page_actor(rt, s, request)
    except NotAuthenticated:
        return None


async def _form(request: Request) -> FormData:
    form = await request.form()
    binding = csrf_binding(request.cookies.get(SESSION_COOKIE), request.cookies.get(CSRF_COOKIE))
    token = form.get("csrf")
    if not runtime(request).signer.csrf_ok(binding, token if isinstance(token, str) else None):
        raise Forbidden("表单已失效（CSRF 校验失败）：请刷新页面后重新提交")
    return form


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _reminder_days(campaign: Any) -> int:
    """How many days before a deadline the campaign starts reminding: the page flags the same window."""
    return int(max(campaign.reminders.offsets_days or [7]))


# --- log-in -----------------------------------------------------------------------------------------

def client_address(request: Request) -> str:
    """The client's address as uvicorn reports it (behind a trusted proxy: the forwarded one)."""
    return request.client.host if request.client else ""


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    return render(request, "login.html", {"next": _safe_next(request.query_params.get("next")), "email": ""})


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    email = str(form.get("email", "")).strip()
    password = str(form.get("password", ""))
    nxt = _safe_next(str(form.get("next", "/")))
    rt = runtime(request)
    ip, agent = client_address(request), request.headers.get("user-agent", "")

    def check() -> tuple[str | None, BranchflowError | None]:
        with rt.tx() as s:  # committed also when refused: the record of a failure must stay
            try:
                person = log_in(s, email, password, ip=ip, via="page", now=rt.signer.wall())
            except (Throttled, NotAuthenticated) as exc:
                return None, exc
            return rt.signer.issue(s, person, ip=ip, user_agent=agent), None

    if not (email and password):
        return render(request, "login.html", {"next": nxt, "email": email, "error": "请填写邮箱和密码"}, status=401)
    token, refused = await run_in_threadpool(check)
    if token is None:
        status = refused.http_status if refused else 401
        resp = render(request, "login.html", {"next": nxt, "email": email,
                                              "error": refused.message if refused else "邮箱或密码错误"}, status=status)
        if isinstance(refused, Throttled):
            resp.headers["Retry-After"] = str(refused.retry_after)
        return resp
    ok = RedirectResponse(nxt, status_code=303)
    ok.set_cookie(SESSION_COOKIE, token, max_age=int(rt.signer.policy.absolute.total_seconds()), httponly=True,
                  samesite="lax", path="/", secure=cookie_secure(request))
    return ok


@router.post("/logout")
async def logout(request: Request) -> Response:
    await _form(request)
    rt = runtime(request)
    raw = request.cookies.get(SESSION_COOKIE)
    if raw:
        def end() -> None:
            with rt.tx() as s:
                web_sessions.end_session(s, raw, now=rt.signer.wall())

        await run_in_threadpool(end)
    resp = RedirectResponse("/login?ok=logged_out", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


# --- to-do list -------------------------------------------------------------------------------------

def _todo(s: Session, actor: Actor, now: dt.datetime) -> list[dict[str, Any]]:
    camp = campaign_of(get_campaign_row(s))
    soon = _reminder_days(camp)
    today = now.astimezone(camp.tz).date()
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for role, scope in sorted(actor.roles):
        one = Actor(email=actor.email, name=actor.name, roles=frozenset({(role, scope)}))
        for stage in OWED[role]:
            for r in visible_cases(s, one, now=now, stage=stage.value, limit=TODO_LIMIT):
                what = _what_is_owed(s, actor, role, stage, r)
                if what is None:
                    continue
                deadline = dt.date.fromisoformat(r["deadline"]) if r["deadline"] else None
                days = (deadline - today).days if deadline else None
                out[(r["code"], what)] = {**r, "what": what, "role_label": ROLE_LABELS[role], "days_left": days,
                                          "due_soon": days is not None and 0 <= days <= soon}
    return sorted(out.values(), key=lambda t: (t["deadline"] or "9999", t["code"]))


def _what_is_owed(s: Session, actor: Actor, role: Role, stage: Stage, row: dict[str, Any]) -> str | None:
    if stage is Stage.committee_grading:
        case = load_case(s, row["code"])
        st = case.state
        if role is Role.committee_member:
            if not st.get("grade"):
                return "计算得分和等级"
            if any(x["member"] == actor.email for x in st["signatures"]) or case.branch.secretary_email == actor.email:
                return None
            return "签字确认等级"
        quorum = case.campaign.quorum_for(case.facts.committee_size)
        return "推进到公示" if len(st["signatures"]) >= quorum else None
    if stage is Stage.publicity:
        return "发布公示 / 处理异议 / 公示期满后推进"
    return {
        Stage.survey: "填写调查摸底",
        Stage.self_assessment: "支部自评打分",
        Stage.member_evaluation: "录入党员群众测评",
        Stage.rectification: "制定并完成整改方案",
        Stage.acceptance: "检查验收",
    }.get(stage, stage.label)


@router.get("/", response_class=HTMLResponse)
def todo_page(request: Request) -> Response:
    rt = runtime(request)
    now = rt.clock()
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        items = _todo(s, actor, now)
    return render(request, "todo.html", {"items": items}, actor=actor)


# --- dashboard --------------------------------------------------------------------------------------

def _scope_clause(s: Session, actor: Actor) -> Any:
    """A WHERE clause on Branch/GeneralBranch/Committee for what the actor may see (None: everything)."""
    if sees_everything(s, actor):
        return None
    committees = {sc for r, sc in actor.roles if r in (Role.org_department, Role.committee_member)}
    gbs = {sc for r, sc in actor.roles if r is Role.general_branch_secretary}
    own = {sc for r, sc in actor.roles if r is Role.branch_secretary}
    return Committee.code.in_(committees) | GeneralBranch.code.in_(gbs) | Branch.code.in_(own)


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request) -> Response:
    rt = runtime(request)
    now = rt.clock()
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        camp_row = get_campaign_row(s)
        camp = campaign_of(camp_row)
        today = now.astimezone(camp.tz).date()
        q = (
            select(GeneralBranch.code.label("gb"), GeneralBranch.name.label("gb_name"), CaseRow.stage, CaseRow.grade,
                   func.count().label("n"), func.sum(sql_case((CaseRow.deadline < today, 1), else_=0)).label("late"))
            .join(Branch, Branch.id == CaseRow.branch_id)
            .join(Committee, Committee.id == Branch.committee_id)
            .outerjoin(GeneralBranch, GeneralBranch.id == Branch.general_branch_id)
            .where(CaseRow.campaign_id == camp_row.id)
            .group_by(GeneralBranch.code, GeneralBranch.name, CaseRow.stage, CaseRow.grade)
        )
        clause = _scope_clause(s, actor)
        if clause is not None:
            q = q.where(clause)
        stages: Counter[str] = Counter()
        grades: Counter[str] = Counter()
        late: Counter[str] = Counter()
        per_gb: dict[str, dict[str, Any]] = {}
        for r in s.execute(q):
            stages[r.stage] += r.n
            if r.grade:
                grades[r.grade] += r.n
            late[r.stage] += int(r.late or 0)
            g = per_gb.setdefault(r.gb or "", {"name": r.gb_name or "（不属党总支）", "total": 0, "accepted": 0,
                                                "late": 0, "stages": Counter()})
            g["total"] += r.n
            g["late"] += int(r.late or 0)
            g["stages"][r.stage] += r.n
            if r.stage == Stage.accepted.value:
                g["accepted"] += r.n
        overdue = visible_cases(s, actor, now=now, overdue=True, limit=30)
        charts = reports_charts.dashboard_svgs(s, camp_row, now) if sees_everything(s, actor) else {}
    total = sum(stages.values())
    stage_rows: list[dict[str, Any]] = [{"stage": st, "label": st.label, "n": stages.get(st.value, 0), "late": late.get(st.value, 0)}
                  for st in Stage]
    grade_rows: list[dict[str, Any]] = [{"code": b.code, "label": b.grade, "n": grades.get(b.code, 0)} for b in camp.grading.scale.bands]
    return render(request, "dashboard.html", {
        "campaign": camp, "total": total, "stage_rows": stage_rows, "grade_rows": grade_rows,
        "max_stage": max([r["n"] for r in stage_rows] + [1]), "max_grade": max([r["n"] for r in grade_rows] + [1]),
        "overdue_total": sum(late.values()), "overdue": overdue, "charts": list(charts.values()),
        "gb_rows": [{"code": k, **v, "where": "、".join(f"{Stage(st).label} {n}" for st, n in sorted(
            v["stages"].items(), key=lambda x: Stage(x[0]).number))} for k, v in sorted(per_gb.items())],
    }, actor=actor)


@router.get("/branches", response_class=HTMLResponse)
def branches_page(request: Request) -> Response:
    rt = runtime(request)
    now = rt.clock()
    qp = request.query_params
    stage = qp.get("stage") or None
    if stage and stage not in {s.value for s in Stage}:
        stage = None
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        rows = visible_cases(s, actor, now=now, stage=stage, general_branch=qp.get("general_branch") or None,
                             overdue=True if qp.get("overdue") else None, limit=500)
    return render(request, "branches.html", {"rows": rows, "stage": stage, "stages": list(Stage),
                                             "overdue": bool(qp.get("overdue"))}, actor=actor)


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


def _branch_context(s: Session, actor: Actor, code: str, now: dt.datetime) -> dict[str, Any]:
    require_see(s, actor, code)
    case = load_case(s, code)
    card = views.card(case, now)
    hist = views.history(s, code)
    rubric = case.campaign.grading.rubric_for(case.facts.branch_type)
    entered = {e["payload"]["to"]: e["at"] for e in hist["events"] if e["kind"] == "moved"}
    timeline = []
    for st in WORKING_STAGES:
        status = "done" if st.number < case.stage.number else "current" if st is case.stage else "todo"
        timeline.append({"stage": st, "status": status, "deadline": case.campaign.deadline_for(st),
                         "entered": entered.get(st.value)})
    events = []
    for e in reversed(hist["events"]):
        local = audit.parse_iso(e["at"]).astimezone(TZ)
        events.append({**e, "local": local.strftime("%Y-%m-%d %H:%M"), "stage_label": Stage(e["stage"]).label})
    return {
        "card": card, "case": case, "perm": _permissions(actor, case), "timeline": timeline, "events": events,
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
        ctx = _branch_context(s, actor, code, now)
    return render(request, "branch.html", ctx, actor=actor)


def _f(form: FormData, name: str) -> str:
    """A form field's text, checked against workflow.limits (no control characters, at most 4000 characters)."""
    v = form.get(name)
    if not isinstance(v, str):
        return ""
    limits.require(limits.check_text(v, f"表单字段“{FIELD_LABELS.get(name, name[:32])}”"))
    return v.strip()


FIELD_LABELS = {"text": "异议内容", "reason": "理由", "evidence": "佐证", "summary": "验收情况", "grade": "等级",
                "deadline": "截止日期", "start": "公示开始日期", "version": "版本"}


def _number(form: FormData, name: str, what: str, *, integer: bool = False) -> float | int | None:
    raw = _f(form, name)
    if raw == "":
        return None
    if integer:
        n, problem = limits.parse_int(raw, what, "int4")
        if problem:
            raise InvalidInput(f"{what}“{raw[:40]}”不是合理的整数")
        return n
    try:
        x = float(raw)
    except ValueError:
        raise InvalidInput(f"{what}“{raw[:40]}”不是数字") from None
    if not math.isfinite(x) or abs(x) > 1e9:
        raise InvalidInput(f"{what}“{raw[:40]}”不是合理的数字")
    return x


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


def perform(s: Session, actor: Actor, code: str, action: str, form: FormData, now: dt.datetime) -> str:
    """Run the form's action; raises (and the caller's transaction rolls back) when anything is refused."""
    if action not in ACTIONS:
        raise InvalidInput(f"未知的操作 {action!r}")
    if _role_flags(actor)["auditor_only"]:
        raise Forbidden(f"{actor.name} 是审计人员，只能查看，不能修改任何数据")
    if action == "object":
        require_public_or_see(s, actor, code)  # the publicity is public; anything else: as require_see
    else:
        require_see(s, actor, code)
    version = _number(form, "version", "版本", integer=True)
    case = load_case(s, code)
    if action in ("record", "record_advance"):
        data = stage_data(case, form)
        service.record(s, code, actor, data, now=now, expected_version=version)  # type: ignore[arg-type]
        if action == "record":
            return "已保存"
        case = service.advance(s, code, actor, now=now)
        return f"已提交，党支部进入“{case.stage.label}”环节"
    if action == "advance":
        case = service.advance(s, code, actor, now=now, expected_version=version)  # type: ignore[arg-type]
        return f"已推进到“{case.stage.label}”环节"
    if action == "grade":
        case = service.compute_grade(s, code, actor, now=now)
        return f"已计算：总分 {case.state['grade']['total']:g}，等级 {case.state['grade']['grade_label']}"
    if action == "adjust":
        service.adjust_grade(s, code, actor, _f(form, "grade"), _f(form, "reason"), now=now)
        return "等级已调整（须重新签字）"
    if action == "sign":
        case = service.sign(s, code, actor, now=now)
        return f"已签字（{len(case.state['signatures'])}/{case.campaign.quorum_for(case.facts.committee_size)}）"
    if action == "publish":
        start = _f(form, "start")
        try:
            d = dt.date.fromisoformat(start) if start else None
        except ValueError:
            raise InvalidInput(f"公示开始日期“{start}”不是日期") from None
        case = service.publish(s, code, actor, now=now, start=d)
        return f"已发布公示：{case.state['publicity']['start']} 至 {case.state['publicity']['end']}"
    if action == "object":
        case = service.lodge_objection(s, code, actor, _f(form, "text"), now=now)
        return f"已登记异议 #{case.state['objections'][-1]['id']}，组织部将核实处理"
    if action == "resolve":
        oid = _number(form, "objection", "异议编号", integer=True)
        verdict = _f(form, "verdict")
        if oid is None or verdict not in ("upheld", "dismissed"):
            raise InvalidInput("请选择要处理的异议及处理结果（成立 / 不成立）")
        service.resolve_objection(s, code, actor, int(oid), upheld=verdict == "upheld", reason=_f(form, "reason"),
                                  now=now)
        return "异议成立，已退回党委评定" if verdict == "upheld" else "异议不成立，已记录"
    if action == "complete":
        item = _number(form, "item", "整改事项编号", integer=True)
        if item is None:
            raise InvalidInput("请选择整改事项")
        service.complete_item(s, code, actor, int(item), _f(form, "evidence"), now=now)
        return f"第 {item} 项已登记完成"
    until = _f(form, "deadline")
    try:
        d = dt.date.fromisoformat(until)
    except ValueError:
        raise InvalidInput(f"新的截止日期“{until}”不是日期（格式 2026-04-18）") from None
    service.extend_deadline(s, code, actor, d, _f(form, "reason"), now=now)
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
                message = perform(s, actor, code, action, form, now)
            return message, None, actor
        except BranchflowError as exc:
            if actor is None or isinstance(exc, NotAuthenticated):
                raise
            return None, exc, actor

    message, error, actor = await run_in_threadpool(run)
    if error is None:
        return await run_in_threadpool(redirect_with_notice, request, f"{back}#top", message or "")
    return await run_in_threadpool(_show_again, request, actor, code, action, form, error, now, back)


FIELD_WORDS = {"到会": "attendance", "大会日期": "meeting_date", "有效票数": "ballots", "平均评分": "rating",
               "党员发挥作用满意率": "sat_members", "书记在党员中满意率": "sat_secretary", "再次定级得分": "regrade_score",
               "新截止日期": "new_deadline", "summary": "summary", "inspected_on": "inspected_on", "理由": "reason",
               "evidence": "evidence", "异议": "text", "last_reelection": "last_reelection",
               "last_activity": "last_activity"}


def invalid_fields(message: str) -> set[str]:
    """The form fields an error message is about, so the page can mark them (rubric items, named fields)."""
    out: set[str] = set()
    for m in re.finditer(r"第 ([0-9A-Za-z._、-]+) 项(?:得分)?", message):
        if "整改" not in message[max(0, m.start() - 6):m.start()]:
            out.update(f"s_{i}" for i in m.group(1).split("、"))
    for word, name in FIELD_WORDS.items():
        if word in message:
            out.add(name)
    for key, label in FOCUS_POINTS.items():
        if label in message:
            out.add(f"f_{key}")
    return out


def _show_again(request: Request, actor: Actor, code: str, action: str, form: FormData, error: BranchflowError,
                now: dt.datetime, back: str) -> Response:
    """The page the form came from, again, with the error beside the form and the person's input kept."""
    rt = runtime(request)
    err = {"message": error.message.split("\n")[0], "unmet": getattr(error, "unmet", []), "action": action,
           "lines": [ln.strip() for ln in error.message.split("\n")[1:] if ln.strip() and not ln.strip().startswith("- ")]}
    if isinstance(error, TransitionRefused) and not err["unmet"]:
        err["lines"] = [ln.strip() for ln in error.message.split("\n")[1:] if ln.strip()]
    with rt.tx() as s:
        if back.startswith("/committee"):
            return render(request, "committee.html", {**_committee_ctx(s, actor, now), "error": err},
                          status=error.http_status, actor=actor)
        if back.startswith("/publicity"):
            return render(request, "publicity.html", {**_publicity_ctx(s, now), "error": err, "err_code": code,
                                                      "text": _f(form, "text")}, status=error.http_status, actor=actor)
        try:
            ctx = _branch_context(s, actor, code, now)
        except BranchflowError:
            return render(request, "error.html", {"title": "无法完成", "message": error.message},
                          status=error.http_status, actor=actor)
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    ctx["invalid"] = invalid_fields(error.message)
    owner = {"record": "record", "record_advance": "record", "advance": "advance", "grade": "grade", "adjust": "grade",
             "sign": "grade", "publish": "publish", "resolve": "resolve", "complete": "complete", "extend": "extend"}
    err["top"] = not ctx["perm"].get(owner.get(action, ""), False)  # no form to show it beside: show it on top
    return render(request, "branch.html", {**ctx, "values": values, "error": err}, status=error.http_status,
                  actor=actor)


# --- committee sign-off -----------------------------------------------------------------------------

def _committee_ctx(s: Session, actor: Actor, now: dt.datetime) -> dict[str, Any]:
    one = Actor(email=actor.email, name=actor.name, roles=frozenset(
        (r, sc) for r, sc in actor.roles if r in (Role.committee_member, Role.org_department, Role.auditor)))
    rows = []
    for r in visible_cases(s, one, now=now, stage=Stage.committee_grading.value, limit=TODO_LIMIT) if one.roles else []:
        case = load_case(s, r["code"])
        st = case.state
        rows.append({
            **r, "score": st["grade"]["total"] if st.get("grade") else None,
            "computed": st["grade"]["grade_label"] if st.get("grade") else None,
            "adjusted": case.campaign.grading.scale.by_code(st["adjustment"]["grade"]).grade if st.get("adjustment") else None,
            "signatures": st["signatures"], "quorum": case.campaign.quorum_for(case.facts.committee_size),
            "signed": any(x["member"] == actor.email for x in st["signatures"]),
            "may_sign": service.may(actor, [Role.committee_member], case) and case.branch.secretary_email != actor.email,
            "may_grade": service.may(actor, [Role.committee_member, Role.org_department], case),
            "may_advance": service.may(actor, [Role.org_department, Role.committee_member], case),
            "explained": views.card(case, now)["grade_explained"],
        })
    return {"rows": rows}


@router.get("/committee", response_class=HTMLResponse)
def committee_page(request: Request) -> Response:
    rt = runtime(request)
    now = rt.clock()
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        ctx = _committee_ctx(s, actor, now)
    return render(request, "committee.html", ctx, actor=actor)


# --- public publicity page --------------------------------------------------------------------------

def _publicity_ctx(s: Session, now: dt.datetime) -> dict[str, Any]:
    rows = []
    for r in views.list_cases(s, now=now, stage=Stage.publicity.value, limit=TODO_LIMIT):
        case = load_case(s, r["code"])
        pub = case.state.get("publicity")
        if not pub:
            continue
        today = now.astimezone(case.campaign.tz).date()
        rows.append({**r, "publicity": pub, "open": today <= dt.date.fromisoformat(pub["end"]),
                     "final_grade_label": views.card(case, now)["final_grade_label"],
                     "objections": len(case.state["objections"])})
    return {"rows": rows, "err_code": None, "text": ""}


@router.get("/publicity", response_class=HTMLResponse)
def publicity_page(request: Request) -> Response:
    rt = runtime(request)
    now = rt.clock()
    with rt.tx() as s:
        actor = _optional_actor(rt, s, request)
        ctx = _publicity_ctx(s, now)
    return render(request, "publicity.html", ctx, actor=actor)


# --- audit ------------------------------------------------------------------------------------------

@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request) -> Response:
    rt = runtime(request)
    qp = request.query_params
    code = (qp.get("branch") or "").strip()
    at_s = (qp.get("at") or "").strip()
    ctx: dict[str, Any] = {"branch": code, "at": at_s, "history": None, "report": None, "events": []}
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        error = None
        try:
            if code:
                require_see(s, actor, code)
                at = parse_time(at_s, "重放日期")
                h = views.history(s, code, at=at)
                ctx["history"] = h
                ctx["events"] = [{**e, "local": audit.parse_iso(e["at"]).astimezone(TZ).strftime("%Y-%m-%d %H:%M"),
                                  "stage_label": Stage(e["stage"]).label} for e in h["events"]]
            if qp.get("verify"):
                if code:
                    report = audit.verify(s, branch_code=code)
                elif sees_everything(s, actor):
                    report = audit.verify(s)
                else:
                    raise Forbidden("校验全部党支部须为审计人员或党委层面人员；请填写本人负责的党支部编码")
                ctx["report"] = report
        except BranchflowError as exc:
            error = {"message": exc.message, "unmet": [], "lines": [], "action": "audit"}
            status = exc.http_status
        else:
            status = 200
    return render(request, "audit.html", {**ctx, "error": error}, status=status, actor=actor)


# --- reports ----------------------------------------------------------------------------------------

def _general_branch_choices(s: Session, actor: Actor) -> tuple[list[dict[str, str]], bool]:
    """The general branches the person may pick on the reports page, and whether "all" is offered."""
    q = (select(GeneralBranch.code, GeneralBranch.name).join(Committee, Committee.id == GeneralBranch.committee_id)
         .order_by(Committee.code, GeneralBranch.code))
    everything = sees_everything(s, actor)
    if not everything:
        committees = {sc for r, sc in actor.roles if r in (Role.org_department, Role.committee_member)}
        gbs = {sc for r, sc in actor.roles if r is Role.general_branch_secretary}
        q = q.where(Committee.code.in_(committees) | GeneralBranch.code.in_(gbs))
    return [{"code": r.code, "name": r.name} for r in s.execute(q)], everything


@router.get("/reports", response_class=HTMLResponse)
def reports_page(request: Request) -> Response:
    rt = runtime(request)
    qp = request.query_params
    gb = (qp.get("general_branch") or "").strip()
    at_s = (qp.get("at") or "").strip()
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        if not _role_flags(actor)["reports"]:
            raise Forbidden(f"{actor.name}（{actor.email}）无权下载报表：报表限组织部、党委委员、审计人员和党总支书记")
        choices, everything = _general_branch_choices(s, actor)
        if not gb and not everything and choices:
            gb = choices[0]["code"]
    params = {k: v for k, v in (("general_branch", gb), ("at", at_s)) if v}
    forms = []
    for name, label in reports.form_names().items():
        per_branch = reports.FORMS[name].per_branch
        p = params if per_branch else {k: v for k, v in params.items() if k != "general_branch"}
        query = ("?" + urlencode(p)) if p else ""
        forms.append({"name": name, "label": label, "per_branch": per_branch,
                      "links": [(fmt, f"/reports/{name}.{fmt}{query}") for fmt in reports.FORMATS]})
    return render(request, "reports.html", {"forms": forms, "choices": choices, "everything": everything,
                                            "general_branch": gb, "at": at_s}, actor=actor)


@router.get("/reports/{file}")
def report_file(file: str, request: Request) -> Response:
    """``/reports/summary.xlsx?general_branch=&at=``: the same file as the API, with the page session."""
    rt = runtime(request)
    now = rt.clock()
    name, _, fmt = file.rpartition(".")
    qp = request.query_params
    stack = ExitStack()
    try:
        s = stack.enter_context(rt.tx())
        actor = _page_actor(rt, s, request)
        form = reports.FORMS.get(name)
        if form is None or fmt not in reports.FORMATS:
            raise NotFound(f"没有报表 {file!r}")
        gb = report_scope(s, actor, (qp.get("general_branch") or "").strip() or None, per_branch=form.per_branch)
        r = reports.render(s, name, fmt, general_branch=gb, at=parse_time((qp.get("at") or "").strip(), "截至日期"),
                           now=now)
        first = next(r.body, b"")
    except BaseException:
        stack.__exit__(*sys.exc_info())
        raise

    def body() -> Iterator[bytes]:
        with stack:
            yield first
            yield from r.body

    return StreamingResponse(body(), media_type=r.media_type, headers={"Content-Disposition": r.content_disposition()})

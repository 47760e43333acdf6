"""The branch list as people use it (issue 16, point 4): search, filters, sort and pages, all in SQL.

:func:`parse` turns the query string of a list page (``?q=&stage=&grade=&general_branch=&overdue=1&sort=
deadline&page=2``) into a :class:`ListQuery` — unknown values are dropped, never an error, so a link
always opens a page; :func:`search` runs it as one counted query and one page query over the indexed
columns of ``cases`` (campaign + stage, deadline, grade), narrowed by the caller's reading scope (a WHERE
clause on ``branches`` / ``general_branches`` / ``committees`` built at the edge from the reading rules).
Nothing is filtered in Python, so a page costs one page of rows whatever the number of branches.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import case as sql_case
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from states.base import Stage
from workflow.models import Branch, CampaignRow, CaseRow, Committee, GeneralBranch
from workflow.repository import campaign_of, get_campaign_row

SORTS = {"code": "编码", "stage": "环节", "deadline": "截止日期", "grade": "等级", "score": "得分"}
PER_PAGE = 50
MAX_PER_PAGE = 200
MAX_SEARCH = 64


@dataclass(frozen=True, kw_only=True)
class ListQuery:
    """What a list page asks for; every field has a harmless default."""

    q: str = ""
    stage: str = ""
    grade: str = ""
    general_branch: str = ""
    overdue: bool = False
    sort: str = "code"
    desc: bool = False
    page: int = 1
    per_page: int = PER_PAGE

    def params(self, **change: Any) -> dict[str, str]:
        """The query string of this query (with ``change`` applied), defaults left out: links keep the state."""
        me = replace(self, **change) if change else self
        out = {"q": me.q, "stage": me.stage, "grade": me.grade, "general_branch": me.general_branch,
               "overdue": "1" if me.overdue else "", "sort": "" if me.sort == "code" else me.sort,
               "desc": "1" if me.desc else "", "page": "" if me.page == 1 else str(me.page),
               "per_page": "" if me.per_page == PER_PAGE else str(me.per_page)}
        return {k: v for k, v in out.items() if v}

    def url(self, path: str, **change: Any) -> str:
        p = self.params(**change)
        return f"{path}?{urlencode(p)}" if p else path

    def sort_url(self, path: str, key: str) -> str:
        """The link of a column header: sort by ``key``, flipping the direction when already sorted by it."""
        return self.url(path, sort=key, desc=(not self.desc) if self.sort == key else False, page=1)


def _int(raw: str | None, default: int, lo: int, hi: int) -> int:
    try:
        n = int(raw or "")
    except ValueError:
        return default
    return min(max(n, lo), hi)


def parse(qp: Mapping[str, str]) -> ListQuery:
    """A :class:`ListQuery` from a query string; values that cannot be meant are dropped."""
    stage = (qp.get("stage") or "").strip()
    sort = (qp.get("sort") or "").strip()
    q = " ".join((qp.get("q") or "").split())[:MAX_SEARCH]
    q = "".join(ch for ch in q if ch.isprintable())
    return ListQuery(
        q=q,
        stage=stage if stage in {s.value for s in Stage} else "",
        grade=(qp.get("grade") or "").strip()[:32],
        general_branch=(qp.get("general_branch") or "").strip()[:64],
        overdue=(qp.get("overdue") or "") in ("1", "on", "true", "yes"),
        sort=sort if sort in SORTS else "code",
        desc=(qp.get("desc") or "") in ("1", "on", "true", "yes"),
        page=_int(qp.get("page"), 1, 1, 1_000_000),
        per_page=_int(qp.get("per_page"), PER_PAGE, 10, MAX_PER_PAGE),
    )


@dataclass(frozen=True, kw_only=True)
class ListPage:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    query: ListQuery
    grades: list[tuple[str, str]]  # (code, label) of the campaign's scale, best first


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search(session: Session, query: ListQuery, *, now: dt.datetime, scope: Any = None,
           campaign: str | None = None, campaign_row: CampaignRow | None = None) -> ListPage:
    """One page of the campaign's cases matching ``query`` within ``scope`` (None: every branch); the
    campaign is ``campaign_row``, else the one coded ``campaign``, else the newest."""
    camp_row = campaign_row or get_campaign_row(session, campaign)
    camp = campaign_of(camp_row)
    scale = camp.grading.scale
    today = now.astimezone(camp.tz).date()
    where: list[Any] = [CaseRow.campaign_id == camp_row.id]
    if scope is not None:
        where.append(scope)
    if query.stage:
        where.append(CaseRow.stage == query.stage)
    if query.grade:
        band = next((b for b in scale.bands if query.grade in (b.code, b.grade)), None)
        where.append(CaseRow.grade == (band.code if band else query.grade))
    if query.general_branch:
        where.append(GeneralBranch.code == query.general_branch)
    if query.overdue:
        where.append(CaseRow.deadline < today)
        where.append(CaseRow.stage != Stage.accepted.value)
    if query.q:
        pat = _like(query.q)
        where.append(or_(Branch.code.like(pat + "%", escape="\\"), Branch.name.like("%" + pat + "%", escape="\\")))

    wide = scope is not None or bool(query.general_branch)  # the scope and the general branch read these joins

    def base(*cols: Any, branch: bool = True) -> Any:
        """Only the joins the filters need: a count of a campaign's stage is one index range on ``cases``."""
        q = select(*cols).select_from(CaseRow)
        if branch or wide or query.q:
            q = q.join(Branch, Branch.id == CaseRow.branch_id)
        if wide:
            q = (q.join(Committee, Committee.id == Branch.committee_id)
                 .outerjoin(GeneralBranch, GeneralBranch.id == Branch.general_branch_id))
        return q.where(*where)

    total = int(session.scalar(base(func.count(), branch=False)) or 0)
    pages = max(1, -(-total // query.per_page))
    page = min(query.page, pages)
    score = CaseRow.state[("grade", "total")].as_float()
    keys: dict[str, Any] = {
        "stage": sql_case({s.value: s.number for s in Stage}, value=CaseRow.stage, else_=99),
        "deadline": CaseRow.deadline,
        "grade": sql_case({b.code: i for i, b in enumerate(scale.bands)}, value=CaseRow.grade, else_=None),
        "score": score,
    }
    order: list[Any]
    if query.sort == "code":  # NOT NULL and unique: the index on branches.code gives the order
        order = [Branch.code.desc() if query.desc else Branch.code.asc()]
    else:
        key = keys[query.sort]
        order = [key.desc().nulls_last() if query.desc else key.asc().nulls_last(), Branch.code]
    # Two steps: the page's case ids by a lean query (the filter and sort columns only), then those rows'
    # columns — so the JSON score and the names are read for one page, not for every row sorted.
    ids = list(session.scalars(base(CaseRow.id).order_by(*order).limit(query.per_page)
                               .offset((page - 1) * query.per_page)))
    found: dict[int, Any] = {}
    if ids:
        detail = (select(CaseRow.id, CaseRow.stage, CaseRow.grade, CaseRow.deadline, CaseRow.version,
                         score.label("score"), Branch.code, Branch.name, Branch.secretary_name,
                         GeneralBranch.code.label("gb_code"), GeneralBranch.name.label("gb_name"))
                  .select_from(CaseRow).join(Branch, Branch.id == CaseRow.branch_id)
                  .outerjoin(GeneralBranch, GeneralBranch.id == Branch.general_branch_id)
                  .where(CaseRow.id.in_(ids)))
        found = {r.id: r for r in session.execute(detail)}
    rows = []
    for r in (found[i] for i in ids if i in found):
        overdue = bool(r.deadline and today > r.deadline and r.stage != Stage.accepted.value)
        rows.append({
            "code": r.code, "name": r.name, "secretary": r.secretary_name, "general_branch": r.gb_code,
            "general_branch_name": r.gb_name, "stage": r.stage, "stage_label": Stage(r.stage).label,
            "grade": r.grade, "grade_label": scale.by_code(r.grade).grade if r.grade else None,
            "score": r.score, "deadline": r.deadline.isoformat() if r.deadline else None, "overdue": overdue,
            "days_left": (r.deadline - today).days if r.deadline else None, "version": r.version,
        })
    return ListPage(rows=rows, total=total, page=page, pages=pages, query=replace(query, page=page),
                    grades=[(b.code, b.grade) for b in scale.bands])


def general_branches(session: Session, scope: Any = None) -> list[tuple[str, str]]:
    """(code, name) of the general branches within ``scope``, for the filter's choices."""
    q = (select(GeneralBranch.code, GeneralBranch.name).distinct()
         .select_from(Branch).join(GeneralBranch, GeneralBranch.id == Branch.general_branch_id)
         .join(Committee, Committee.id == Branch.committee_id).order_by(GeneralBranch.code))
    if scope is not None:
        q = q.where(scope)
    return [(r.code, r.name) for r in session.execute(q)]

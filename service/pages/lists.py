"""The list of branches (issue 16, point 4): search, filters, sort and pages that keep their state in the
URL (a GET form; every link — column headers, pages — carries the query), with checkboxes for the bulk
actions (service/pages/bulk.py). The query runs in SQL (workflow.listing) within the reading scope."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from notifications.manual import BULK_ACTIONS
from service.app import runtime
from service.pages.common import _page_actor, _role_flags, render
from service.pages.nav import campaign_row
from service.pages.scope import _scope_clause
from states.base import Role, Stage
from workflow import listing

router = APIRouter(include_in_schema=False)

# Which bulk actions each role may offer on the list (the use cases still decide per branch).
OFFERED: dict[Role, tuple[str, ...]] = {
    Role.org_department: ("grade", "publish", "advance", "remind", "supervise"),
    Role.committee_member: ("grade", "advance"),
    Role.general_branch_secretary: ("advance", "remind"),
}


def offered(kinds: set[Role]) -> list[tuple[str, str]]:
    names = {a for k in kinds for a in OFFERED.get(k, ())}
    return [(name, label) for name, (label, _) in BULK_ACTIONS.items() if name in names]


@router.get("/branches", response_class=HTMLResponse)
def branches_page(request: Request) -> Response:
    rt = runtime(request)
    now = rt.clock()
    query = listing.parse(request.query_params)
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        scope = _scope_clause(s, actor)
        page = listing.search(s, query, now=now, scope=scope, campaign_row=campaign_row(s, actor, request.query_params.get("campaign") or None))
        gbs = listing.general_branches(s, scope)
    actions = [] if _role_flags(actor)["auditor_only"] else offered({r for r, _ in actor.roles})
    here = page.query.url("/branches")
    return render(request, "branches.html", {
        "page": page, "rows": page.rows, "query": page.query, "stages": list(Stage), "general_branches": gbs,
        "sorts": listing.SORTS, "actions": actions, "here": here,
        "pages": _window(page.page, page.pages),
    }, actor=actor)


def _window(page: int, pages: int) -> list[int]:
    """The page numbers to link: the first, the last and two either side of the current one."""
    near = {1, pages, *range(max(1, page - 2), min(pages, page + 2) + 1)}
    return sorted(near)

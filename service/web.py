"""The pages (Jinja2, Chinese, usable on a phone): log-in, to-do list, dashboard, branch page, committee
sign-off, public publicity page with the objection form, audit page, reports.

The pages live in ``service/pages/``, one module per area; this module combines their routers into the one
``router`` the app includes, and keeps the shared helpers importable under their old names.

Every form carries a CSRF token; every POST runs one use case (or a record and an advance together) in
one transaction, so a refused form changes nothing and the page is shown again with the error in place
and the person's input kept.
"""

from __future__ import annotations

from fastapi import APIRouter

from service.pages import (  # issue 16, points 4 and 5: bulk, lists, notices, objections
    audit,
    branch,
    bulk,
    committee,
    dashboard,
    lists,
    login,
    notices,
    objections,
    publicity,
    record,
    reports,
    todo,
)
from service.pages.branch import ACTIONS, perform, stage_data
from service.pages.common import (
    FIELD_LABELS,
    NOTICES,
    TODO_LIMIT,
    _f,
    _form,
    _number,
    _optional_actor,
    _page_actor,
    _role_flags,
    _safe_next,
    error_page,
    redirect_with_notice,
    render,
    templates,
)
from service.pages.login import client_address
from service.pages.todo import OWED

__all__ = [
    "ACTIONS", "FIELD_LABELS", "NOTICES", "OWED", "TODO_LIMIT", "_f", "_form", "_number",
    "_optional_actor", "_page_actor", "_role_flags", "_safe_next", "client_address", "error_page",
    "perform", "redirect_with_notice", "render", "router", "stage_data", "templates",
]

router = APIRouter(include_in_schema=False)
for _area in (login, todo, dashboard, branch, committee, publicity, audit, reports, lists, bulk, notices, objections,
              record):
    router.include_router(_area.router)

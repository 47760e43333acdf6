"""The attachment pages (issue 16): the download for a logged-in person and the files' list on the branch
page (template globals: ``attachment_groups(state)`` and the file input's accept list and limits)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.app import runtime
from service.files import blob_store, download
from service.pages.common import _page_actor, templates
from workflow import attachments, limits
from workflow.attachments import TYPES

router = APIRouter(include_in_schema=False)


# --- the branch page's list of files ----------------------------------------------------------------

def _file(ref: dict[str, Any]) -> dict[str, Any]:
    ftype = TYPES.get(str(ref.get("media_type")))
    return {**ref, "url": f"/attachments/{ref['sha256']}", "label": ftype.label if ftype else "文件",
            "image": bool(ftype and ftype.image), "pdf": ref.get("media_type") == "application/pdf",
            "size_text": attachments.size_text(int(ref.get("size", 0)))}


def groups(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The case's files, grouped by the record they belong to (for the branch page and the record views)."""
    out = []
    rect = state.get("records", {}).get("rectification", {})
    for n, it in enumerate(rect.get("items", []), 1):
        if it.get("attachments"):
            out.append({"label": f"整改事项 {n} 的佐证：{it.get('problem', '')}", "files": [_file(r) for r in it["attachments"]]})
    if rect.get("attachments"):
        out.append({"label": "自我剖析材料", "files": [_file(r) for r in rect["attachments"]]})
    insp = state.get("inspection") or {}
    if insp.get("attachments"):
        out.append({"label": "检查验收材料（书面总结）", "files": [_file(r) for r in insp["attachments"]]})
    for n, old in enumerate(state.get("inspections") or [], 1):
        if old and old.get("attachments"):
            out.append({"label": f"第 {n} 次检查验收（未通过）的材料", "files": [_file(r) for r in old["attachments"]]})
    return out


templates.env.globals["attachment_groups"] = groups
templates.env.globals["attachment_file"] = _file
templates.env.globals["attachment_accept"] = attachments.ACCEPT_ATTR
templates.env.globals["attachment_limit_text"] = (
    f"可多选，每个文件最多 {attachments.size_text(limits.ATTACHMENT_MAX_BYTES)}，一次最多 "
    f"{limits.ATTACHMENT_MAX_PER_RECORD} 个；接受 {attachments.ACCEPTED_TEXT}")


@router.get("/attachments/{sha}")
def page_download(sha: str, request: Request) -> Response:
    rt = runtime(request)
    store = blob_store(request)
    with rt.tx() as s:
        actor = _page_actor(rt, s, request)
        return download(s, actor, sha, store)



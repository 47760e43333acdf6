"""Attachments at the edges (issue 16), shared by the pages and the API: the app's blob store, reading the
files of a form (each checked from its bytes) and the checked download.

A download recomputes the sha256 of the stored bytes and refuses (500, 文件已损坏或被篡改, logged) when they
differ. An unknown hash and a file of branches outside the person's scope answer the same 404. Images and
PDFs are shown inline (``Content-Disposition: inline``), everything else is downloaded (``attachment``);
``X-Content-Type-Options: nosniff`` and the type from the bytes (checked at upload) always. Images get the
sandboxed file policy of :mod:`service.security`; a PDF gets :data:`PDF_CSP` — the same, but not
``sandbox`` and with ``object-src 'self'``, since browsers refuse to run their PDF viewer in a sandboxed
document. The pages never frame a file: a PDF opens in its own tab, so ``frame-ancestors 'none'`` stays.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUpload

from service.app import runtime
from service.auth import require_see
from workflow import attachments, limits
from workflow.attachments import TYPES, FileTooLarge, Upload, check_file
from workflow.blobs import BlobStore, store_for
from workflow.errors import NotFound
from workflow.service import Actor

PDF_CSP = ("default-src 'none'; object-src 'self'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
           "frame-ancestors 'none'; form-action 'none'")
FIELD = "files"  # the file input's name on every form


def blob_store(request: Request) -> BlobStore:
    """The app's blob store (``BRANCHFLOW_BLOB_URL``), made once; a test may set ``app.state.blob_store``."""
    store: BlobStore | None = getattr(request.app.state, "blob_store", None)
    if store is None:
        store = store_for(runtime(request).settings)
        request.app.state.blob_store = store
    return store


def read_uploads(form: FormData, field: str = FIELD) -> list[Upload]:
    """The files of a form, each checked from its bytes (nothing is stored here); an empty file input is none."""
    out = []
    for v in form.getlist(field):
        if not isinstance(v, StarletteUpload):
            continue
        if not v.filename and not v.size:
            continue
        if v.size is not None and v.size > limits.ATTACHMENT_MAX_BYTES:
            shown = attachments.clean_name(v.filename or "")[:60] or "未命名文件"
            raise FileTooLarge(f"附件“{shown}”过大：{attachments.size_text(v.size)}，每个文件最多 "
                               f"{attachments.size_text(limits.ATTACHMENT_MAX_BYTES)}")
        v.file.seek(0)
        out.append(check_file(v.filename or "", v.file.read(limits.ATTACHMENT_MAX_BYTES + 1)))
    return out


# --- the download -----------------------------------------------------------------------------------

def _visible_branches(s: Session, actor: Actor, sha: str) -> list[str]:
    out = []
    for code in attachments.branches_of(s, sha):
        try:
            require_see(s, actor, code)
        except NotFound:
            continue
        out.append(code)
    return out


def download(s: Session, actor: Actor, sha: str, store: BlobStore) -> Response:
    """The checked bytes of ``sha`` with the headers of its type; 404 alike for unknown and out of scope."""
    visible = _visible_branches(s, actor, sha)
    meta = attachments.meta_of(s, sha, visible) if visible else None
    if meta is None:
        raise attachments.not_found(sha)
    data = attachments.read_checked(store, sha)
    ftype = TYPES[meta["media_type"]]
    name = str(meta["name"])
    fallback = "attachment" + ftype.extensions[0]
    headers = {
        "Content-Disposition": f"{'inline' if ftype.inline else 'attachment'}; filename=\"{fallback}\"; "
                               f"filename*=UTF-8''{quote(name, safe='')}",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store",
    }
    if ftype.media_type == "application/pdf":
        headers["Content-Security-Policy"] = PDF_CSP
    return Response(data, media_type=ftype.media_type, headers=headers)



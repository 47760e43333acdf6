"""Attachments (issue 16): what a file may be, checked from its bytes, and how records carry it.

    check_file(name, data)      → Upload(ref, data)   the type from the bytes (never the name), the size
                                 limit, the name sanitised and matched against the type
    check_batch(new, existing)  the per-record count and total, the per-case total
    refs_in(obj)                every AttachmentRef-shaped dict inside an event payload or a state
    index(session, case, refs)  the ``attachments`` rows (migration 0010) of the event just appended
    branches_of(session, sha)   the branches whose events reference a file (the download's scope check)
    read_checked(store, sha)    the bytes, after recomputing their sha256: FileDamaged when they differ
    check_store(session, store) every referenced file present and intact (``audit verify --files``)

Accepted: PDF, PNG, JPEG, GIF, WebP, Word/Excel (.docx/.xlsx: a ZIP with ``[Content_Types].xml`` and
``word/`` or ``xl/``, no macros), legacy Word/Excel (.doc/.xls: an OLE compound file with a
``WordDocument`` or ``Workbook`` stream, no VBA project). Everything else is refused, with a word for the
dangerous kinds (programs, scripts, web pages) even when they carry a harmless name.

Errors::

    InvalidInput
    └── FileRefused           a type, a name or a count the rules refuse (HTTP 422)
        └── FileTooLarge      over a size limit (HTTP 413)
    BranchflowError
    └── FileDamaged           the stored bytes no longer match their hash (HTTP 500, logged)
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from states.attachment import AttachmentRef
from workflow import limits
from workflow.blobs import BlobStore, is_sha, sha256_hex
from workflow.errors import BranchflowError, InvalidInput, NotFound

log = logging.getLogger("branchflow.attachments")


class FileRefused(InvalidInput):
    """附件不符合要求，未保存。"""


class FileTooLarge(FileRefused):
    """附件过大，未保存。"""

    http_status = 413


class FileDamaged(BranchflowError):
    """文件已损坏或被篡改。"""

    exit_code = 7
    http_status = 500


@dataclass(frozen=True, kw_only=True)
class FileType:
    media_type: str
    label: str
    extensions: tuple[str, ...]  # the first is the one a name without an extension is given

    @property
    def image(self) -> bool:
        return self.media_type.startswith("image/")

    @property
    def inline(self) -> bool:
        """Shown in the browser (an image preview, the PDF viewer); every other type is downloaded."""
        return self.image or self.media_type == "application/pdf"


TYPES: dict[str, FileType] = {t.media_type: t for t in (
    FileType(media_type="application/pdf", label="PDF 文件", extensions=(".pdf",)),
    FileType(media_type="image/png", label="PNG 图片", extensions=(".png",)),
    FileType(media_type="image/jpeg", label="JPEG 图片", extensions=(".jpg", ".jpeg", ".jpe")),
    FileType(media_type="image/gif", label="GIF 图片", extensions=(".gif",)),
    FileType(media_type="image/webp", label="WebP 图片", extensions=(".webp",)),
    FileType(media_type="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
             label="Word 文档", extensions=(".docx",)),
    FileType(media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
             label="Excel 表格", extensions=(".xlsx",)),
    FileType(media_type="application/msword", label="Word 文档（97-2003）", extensions=(".doc",)),
    FileType(media_type="application/vnd.ms-excel", label="Excel 表格（97-2003）", extensions=(".xls",)),
)}
ACCEPTED_TEXT = "PDF、图片（PNG/JPEG/GIF/WebP）、Word（.docx/.doc）、Excel（.xlsx/.xls）"
ACCEPT_ATTR = ".pdf,.png,.jpg,.jpeg,.gif,.webp,.docx,.xlsx,.doc,.xls"  # the file input's accept=

_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_EXECUTABLES = (
    (b"MZ", "Windows 可执行程序"),
    (b"\x7fELF", "Linux 可执行程序"),
    (b"\xcf\xfa\xed\xfe", "macOS 可执行程序"), (b"\xce\xfa\xed\xfe", "macOS 可执行程序"),
    (b"\xfe\xed\xfa\xce", "macOS 可执行程序"), (b"\xfe\xed\xfa\xcf", "macOS 可执行程序"),
    (b"\xca\xfe\xba\xbe", "macOS 或 Java 程序"),
    (b"#!", "脚本"),
    (b"\x00asm", "WebAssembly 程序"),
    (b"dex\n", "安卓程序"),
)
_MARKUP = re.compile(rb"^\s*<(?:!doctype|html|head|body|script|svg|\?xml|iframe|object|meta|a\s|div|!--)",
                     re.IGNORECASE)
_SCRIPT = re.compile(rb"<script|javascript:|\bon[a-z]+\s*=", re.IGNORECASE)


def _refuse(message: str) -> FileRefused:
    return FileRefused(message)


def sniff(data: bytes, shown: str) -> FileType:
    """The file's type from its bytes; refuses programs, scripts, web pages and anything not in :data:`TYPES`."""
    head = data[:64]
    for magic, what in _EXECUTABLES:
        if head.startswith(magic):
            raise _refuse(f"附件“{shown}”是{what}，不能上传：只接受 {ACCEPTED_TEXT}")
    if head.startswith(b"%PDF-"):
        return TYPES["application/pdf"]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return TYPES["image/png"]
    if head.startswith(b"\xff\xd8\xff"):
        return TYPES["image/jpeg"]
    if head.startswith((b"GIF87a", b"GIF89a")):
        return TYPES["image/gif"]
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return TYPES["image/webp"]
    if head.startswith(b"PK\x03\x04"):
        return _office_zip(data, shown)
    if head.startswith(_OLE):
        return _office_ole(data, shown)
    text = data[:4096].lstrip(b"\xef\xbb\xbf\xff\xfe\x00 \t\r\n")
    if _MARKUP.match(text) or (_SCRIPT.search(data[:65536]) and b"\x00" not in data[:4096]):
        raise _refuse(f"附件“{shown}”是网页或含脚本的文件（HTML/SVG/XML），不能上传：只接受 {ACCEPTED_TEXT}")
    raise _refuse(f"附件“{shown}”的类型不受支持：只接受 {ACCEPTED_TEXT}（按文件内容判断，而非文件名）")


def _office_zip(data: bytes, shown: str) -> FileType:
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()  # the central directory only; nothing inflated
    except (zipfile.BadZipFile, ValueError, OSError):
        raise _refuse(f"附件“{shown}”是损坏的压缩文件") from None
    if "[Content_Types].xml" in names:
        if any(n.lower().endswith("vbaproject.bin") for n in names):
            raise _refuse(f"附件“{shown}”含有宏（VBA），不能上传：请另存为不含宏的 .docx / .xlsx")
        if any(n.startswith("word/") for n in names):
            return TYPES["application/vnd.openxmlformats-officedocument.wordprocessingml.document"]
        if any(n.startswith("xl/") for n in names):
            return TYPES["application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"]
    raise _refuse(f"附件“{shown}”是压缩包，不是 Word 或 Excel 文档：只接受 {ACCEPTED_TEXT}")


def _office_ole(data: bytes, shown: str) -> FileType:
    def has(stream: str) -> bool:
        return stream.encode("utf-16-le") in data

    if has("_VBA_PROJECT") or has("Macros"):
        raise _refuse(f"附件“{shown}”含有宏（VBA），不能上传：请另存为不含宏的文档")
    if has("WordDocument"):
        return TYPES["application/msword"]
    if has("Workbook") or has("Book"):
        return TYPES["application/vnd.ms-excel"]
    raise _refuse(f"附件“{shown}”是 Office 97-2003 格式，但不是 Word 或 Excel 文档：只接受 {ACCEPTED_TEXT}")


def clean_name(raw: str) -> str:
    """The display name: the last path part, NFC, no control/format characters, at most 200 characters."""
    name = re.split(r"[/\\]", raw or "")[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(" " if ch in "\t\n\r" else ch for ch in name if ch in "\t\n\r" or not limits._bad_char(ch))
    name = re.sub(r"\s+", " ", name).strip().lstrip(".").strip()
    lim = limits.TEXT["file_name"].max_len
    if len(name) > lim:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: lim - len(ext) - 1] + "." + ext) if dot and len(ext) <= 8 else name[:lim]
    return name


@dataclass(frozen=True, kw_only=True)
class Upload:
    """A file that passed the checks: its reference (for the event) and its bytes (for the store)."""

    ref: AttachmentRef
    data: bytes

    @property
    def sha256(self) -> str:
        return self.ref.sha256


def check_file(name: str, data: bytes) -> Upload:
    """Check one uploaded file; raises :class:`FileRefused` / :class:`FileTooLarge` and stores nothing."""
    display = clean_name(name)
    shown = (display or "未命名文件")[:60]
    if not data:
        raise _refuse(f"附件“{shown}”是空文件")
    if len(data) > limits.ATTACHMENT_MAX_BYTES:
        raise FileTooLarge(f"附件“{shown}”过大：{_size(len(data))}，每个文件最多 {_size(limits.ATTACHMENT_MAX_BYTES)}")
    ftype = sniff(data, shown)
    stem, dot, ext = display.rpartition(".")
    if not display or not dot or not stem:
        display = (display or "附件") + ftype.extensions[0]
    elif "." + ext.lower() not in ftype.extensions:
        wanted = "、".join(ftype.extensions)
        raise _refuse(f"附件“{shown}”的文件名与内容不符：内容是{ftype.label}（应为 {wanted}），"
                      f"请检查是否选错了文件或改过扩展名")
    ref = AttachmentRef(sha256=sha256_hex(data), size=len(data), media_type=ftype.media_type,
                        name=display)
    return Upload(ref=ref, data=data)


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    return f"{max(1, n // 1024)} KB"


def size_text(n: int) -> str:
    return _size(n)


def refs_in(obj: Any) -> Iterator[dict[str, Any]]:
    """Every attachment reference inside ``obj`` (an event payload, a record, a whole state)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "attachments" and isinstance(v, list):
                for r in v:
                    if isinstance(r, dict) and isinstance(r.get("sha256"), str):
                        yield r
            else:
                yield from refs_in(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from refs_in(v)


def check_batch(new: Sequence[Upload], existing: Iterable[dict[str, Any]]) -> list[Upload]:
    """The uploads of one form, without repeats, within the per-record and per-case limits."""
    unique: dict[str, Upload] = {}
    for u in new:
        unique.setdefault(u.sha256, u)
    out = list(unique.values())
    if len(out) > limits.ATTACHMENT_MAX_PER_RECORD:
        raise _refuse(f"一次最多上传 {limits.ATTACHMENT_MAX_PER_RECORD} 个附件（本次 {len(out)} 个）")
    total = sum(u.ref.size for u in out)
    if total > limits.ATTACHMENT_MAX_PER_RECORD_BYTES:
        raise FileTooLarge(f"本次上传的附件合计 {_size(total)}，一次最多 {_size(limits.ATTACHMENT_MAX_PER_RECORD_BYTES)}")
    have: dict[str, int] = {}
    for r in existing:
        have.setdefault(str(r["sha256"]), int(r.get("size", 0)))
    case_total = sum(have.values()) + sum(u.ref.size for u in out if u.sha256 not in have)
    if case_total > limits.ATTACHMENT_MAX_PER_CASE_BYTES:
        raise FileTooLarge(f"该支部的附件合计将达 {_size(case_total)}，超过上限 {_size(limits.ATTACHMENT_MAX_PER_CASE_BYTES)}")
    return out


def refs_json(uploads: Sequence[Upload]) -> list[dict[str, Any]]:
    return [u.ref.model_dump(mode="json") for u in uploads]


# --- the index (migration 0010) and the store -------------------------------------------------------

def index(session: Session, case_id: int, seq: int, at: dt.datetime, refs: Iterable[dict[str, Any]]) -> None:
    """One ``attachments`` row per file of the event ``(case_id, seq)``, in the caller's transaction."""
    from workflow.models import AttachmentRow

    rows = [{"sha256": r["sha256"], "case_id": case_id, "event_seq": seq, "name": r["name"],
             "media_type": r["media_type"], "size": r["size"], "at": at} for r in refs]
    if rows:
        session.execute(insert(AttachmentRow), rows)


def branches_of(session: Session, sha: str) -> list[str]:
    """The codes of the branches whose events reference the file (none for an unknown or malformed hash)."""
    from workflow.models import AttachmentRow, Branch, CaseRow

    if not is_sha(sha):
        return []
    return list(session.scalars(
        select(Branch.code).join(CaseRow, CaseRow.branch_id == Branch.id)
        .join(AttachmentRow, AttachmentRow.case_id == CaseRow.id)
        .where(AttachmentRow.sha256 == sha).distinct().order_by(Branch.code)))


def meta_of(session: Session, sha: str, branch_codes: Iterable[str]) -> dict[str, Any] | None:
    """The name and type under which one of these branches filed the file (its first filing)."""
    from workflow.models import AttachmentRow, Branch, CaseRow

    row = session.execute(
        select(AttachmentRow.name, AttachmentRow.media_type, AttachmentRow.size)
        .join(CaseRow, CaseRow.id == AttachmentRow.case_id).join(Branch, Branch.id == CaseRow.branch_id)
        .where(AttachmentRow.sha256 == sha, Branch.code.in_(list(branch_codes)))
        .order_by(AttachmentRow.id).limit(1)).first()
    return None if row is None else {"name": row.name, "media_type": row.media_type, "size": row.size}


def read_checked(store: BlobStore, sha: str) -> bytes:
    """The stored bytes of ``sha``, only when they still hash to it."""
    data = store.get(sha)
    if data is None:
        log.error("attachment missing from the store: %s (%s)", sha, store.describe())
        raise FileDamaged("文件已损坏或被篡改：存储中找不到该文件，请联系管理员")
    if sha256_hex(data) != sha:
        log.error("attachment tampered: stored bytes of %s hash to %s (%s)", sha, sha256_hex(data), store.describe())
        raise FileDamaged("文件已损坏或被篡改：内容与登记时的哈希值不符，已拒绝下载，请联系管理员")
    return data


def store_all(store: BlobStore, uploads: Iterable[Upload]) -> None:
    """Put the bytes into the store (idempotent; called after the event was appended, before the commit)."""
    for u in uploads:
        got = store.put(u.data)
        if got != u.sha256:  # pragma: no cover - a store that does not address by content
            raise FileDamaged("存储返回的哈希值与文件不符")


@dataclass(frozen=True, kw_only=True)
class FileProblem:
    sha256: str
    branch: str
    seq: int
    name: str
    problem: str  # missing | tampered


def check_store(session: Session, store: BlobStore) -> tuple[int, list[FileProblem]]:
    """Every file referenced by an event (the log is the truth, not the index): present and intact.

    Returns how many distinct files were checked and the problems, one per (file, event)."""
    from workflow.models import Branch, CaseRow, EventRow

    rows = session.execute(
        select(Branch.code, EventRow.seq, EventRow.body).join(CaseRow, CaseRow.id == EventRow.case_id)
        .join(Branch, Branch.id == CaseRow.branch_id)
        .where(EventRow.body.like('%"attachments"%')).order_by(Branch.code, EventRow.seq))
    verdict: dict[str, str | None] = {}
    problems: list[FileProblem] = []
    for code, seq, body in rows:
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            continue  # a damaged body is the chain check's finding
        for r in refs_in(event.get("payload")):
            sha = str(r["sha256"])
            if sha not in verdict:
                data = store.get(sha) if is_sha(sha) else None
                verdict[sha] = "missing" if data is None else None if sha256_hex(data) == sha else "tampered"
            if verdict[sha]:
                problems.append(FileProblem(sha256=sha, branch=code, seq=seq, name=str(r.get("name", "")),
                                            problem=str(verdict[sha])))
    return len(verdict), problems


def not_found(sha: str) -> NotFound:
    """The one answer for an unknown file and for a file of a branch outside the caller's scope."""
    return NotFound(f"附件 {sha[:64]!r} 不存在或无权访问")

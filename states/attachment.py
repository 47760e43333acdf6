"""An attached file as a record holds it: its sha256, size, type and display name (issue 16).

The bytes live in the blob store under their sha256 (workflow/blobs.py); this reference goes into the
body of the event that files the record (an item's completion, the self-analysis, the inspection), so the
hash chain and the Merkle log cover the file. Only :func:`workflow.attachments.check_file` makes one, from
the bytes themselves.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from states.base import Record

MediaType = Literal[
    "application/pdf", "image/png", "image/jpeg", "image/gif", "image/webp",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/msword", "application/vnd.ms-excel",
]


class AttachmentRef(Record):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=1, le=2**31 - 1)
    media_type: MediaType
    name: str = Field(min_length=1, max_length=200)

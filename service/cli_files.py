"""``--attach FILE`` for the CLI commands that file a record with files (issue 16): ``record`` (the
self-analysis in rectification, the inspection in acceptance) and ``complete`` (an item's evidence).

Each file is read and checked from its bytes before anything is written (a refused one changes nothing);
the bytes go into the blob store (``BRANCHFLOW_BLOB_URL``) in the same transaction as the event, after it
was appended.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from workflow import attachments, limits
from workflow.attachments import FileTooLarge, Upload
from workflow.blobs import store_for
from workflow.errors import InvalidInput


def read_files(paths: tuple[str, ...]) -> list[Upload]:
    out = []
    for p in paths:
        path = Path(p)
        try:
            size = path.stat().st_size
            if size > limits.ATTACHMENT_MAX_BYTES:
                raise FileTooLarge(f"附件“{path.name}”过大：{attachments.size_text(size)}，每个文件最多 "
                                   f"{attachments.size_text(limits.ATTACHMENT_MAX_BYTES)}")
            data = path.read_bytes()
        except FileNotFoundError:
            raise InvalidInput(f"找不到附件文件 {p}") from None
        except IsADirectoryError:
            raise InvalidInput(f"{p} 是文件夹，不是文件") from None
        except OSError as exc:
            raise InvalidInput(f"无法读取附件 {p}：{exc.strerror}") from None
        out.append(attachments.check_file(path.name, data))
    return out


def with_files(fn: Callable[..., Any], paths: tuple[str, ...], settings: Any) -> tuple[Callable[..., Any], dict[str, Any]]:
    """``fn`` filing the files too, and its extra keyword arguments; without ``--attach``: ``fn`` as it is."""
    if not paths:
        return fn, {}
    files = read_files(paths)

    def run(s: Any, branch: str, actor: Any, **kw: Any) -> Any:
        case = fn(s, branch, actor, **kw)
        attachments.store_all(store_for(settings), files)
        return case

    return run, {"files": files}

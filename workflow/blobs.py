"""A content-addressed blob store: files kept under their sha256 (hex), so the same bytes are one file and
anything read back can be checked against its name.

    BlobStore (Protocol)    put(data) → sha · get(sha) → bytes | None · exists(sha) · delete(sha) · shas()
    FolderStore(root)       the default: ``<data_dir>/files/ab/cd/<sha>``, files 0600, folders 0700; a put
                            writes a temp file in the same folder, fsyncs and renames it into place, so a
                            crash leaves either no file or the whole one; putting bytes already there is a
                            no-op
    S3Store(bucket, prefix) any S3-compatible store (boto3, the ``[s3]`` extra): ``<prefix>/ab/cd/<sha>``
    InMemoryStore           for unit tests of pure code
    store_for(settings)     ``BRANCHFLOW_BLOB_URL`` empty → FolderStore(<data_dir>/files); ``file:///path``
                            → FolderStore(path); ``s3://bucket/prefix`` → S3Store with the ``BRANCHFLOW_S3_*``
                            settings

A store never checks what it returns: :func:`workflow.attachments.read_checked` recomputes the hash.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from workflow.errors import InvalidInput
from workflow.settings import Settings

SHA_HEX = re.compile(r"[0-9a-f]{64}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_sha(value: str) -> bool:
    return bool(SHA_HEX.fullmatch(value))


def fan_out(sha: str) -> str:
    """``ab/cd/<sha>``: two levels of 256 folders, so no folder holds millions of files."""
    if not is_sha(sha):
        raise ValueError("not a sha256 hex digest")
    return f"{sha[:2]}/{sha[2:4]}/{sha}"


class BlobStore(Protocol):
    """Where attachment bytes live. ``put`` is idempotent and returns the sha256 of what it stored."""

    def put(self, data: bytes) -> str: ...

    def get(self, sha: str) -> bytes | None: ...

    def exists(self, sha: str) -> bool: ...

    def delete(self, sha: str) -> None: ...

    def shas(self) -> Iterator[str]: ...

    def describe(self) -> str: ...


class FolderStore:
    """Blobs as files under ``root`` (created 0700 on first use)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, sha: str) -> Path:
        return self.root / fan_out(sha)

    def put(self, data: bytes) -> str:
        sha = sha256_hex(data)
        path = self._path(sha)
        if path.is_file() and path.stat().st_size == len(data) and sha256_hex(path.read_bytes()) == sha:
            return sha  # already there, intact (a damaged copy is replaced by the good bytes)
        if not path.parent.is_dir():
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            for d in (self.root, path.parent.parent, path.parent):
                d.mkdir(mode=0o700, exist_ok=True)
                os.chmod(d, 0o700)  # whatever the umask
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")  # mkstemp creates it 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return sha

    def get(self, sha: str) -> bytes | None:
        try:
            return self._path(sha).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def exists(self, sha: str) -> bool:
        return self._path(sha).is_file()

    def delete(self, sha: str) -> None:
        try:
            self._path(sha).unlink()
        except FileNotFoundError:
            pass

    def shas(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for p in sorted(self.root.glob("??/??/*")):
            if is_sha(p.name) and p.is_file():
                yield p.name

    def describe(self) -> str:
        return f"文件夹 {self.root}"


class S3Store:
    """Blobs as objects ``<prefix>/ab/cd/<sha>`` in a bucket of any S3-compatible store (needs boto3)."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str = "", region: str = "",
                 access_key_id: str = "", secret_access_key: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:  # pragma: no cover - depends on the installed extras
                raise InvalidInput("BRANCHFLOW_BLOB_URL 指向 S3，但未安装 boto3：请安装 branchflow[s3]") from None
            kw: dict[str, Any] = {}
            if endpoint_url:
                kw["endpoint_url"] = endpoint_url
            if region:
                kw["region_name"] = region
            if access_key_id:
                kw["aws_access_key_id"] = access_key_id
                kw["aws_secret_access_key"] = secret_access_key
            # path-style addressing when an endpoint is given: MinIO, Ceph and the like answer it by default
            cfg = Config(s3={"addressing_style": "path" if endpoint_url else "auto"},
                         retries={"max_attempts": 3, "mode": "standard"})
            client = boto3.client("s3", config=cfg, **kw)
        self.client = client

    def _key(self, sha: str) -> str:
        return f"{self.prefix}/{fan_out(sha)}" if self.prefix else fan_out(sha)

    def _missing(self, exc: Exception) -> bool:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def put(self, data: bytes) -> str:
        sha = sha256_hex(data)
        if self.exists(sha):
            return sha
        import base64

        self.client.put_object(Bucket=self.bucket, Key=self._key(sha), Body=data,
                               ContentType="application/octet-stream",
                               ChecksumSHA256=base64.b64encode(bytes.fromhex(sha)).decode())
        return sha

    def get(self, sha: str) -> bytes | None:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(sha))
        except Exception as exc:
            if self._missing(exc):
                return None
            raise
        return bytes(obj["Body"].read())

    def exists(self, sha: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(sha))
        except Exception as exc:
            if self._missing(exc):
                return False
            raise
        return True

    def delete(self, sha: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(sha))

    def shas(self) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else "")
        for page in pages:
            for obj in page.get("Contents", []):
                name = str(obj["Key"]).rsplit("/", 1)[-1]
                if is_sha(name):
                    yield name

    def describe(self) -> str:
        return f"S3 s3://{self.bucket}/{self.prefix}"


class InMemoryStore:
    """A dict of blobs: for unit tests of pure code."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def put(self, data: bytes) -> str:
        sha = sha256_hex(data)
        self.blobs.setdefault(sha, bytes(data))
        return sha

    def get(self, sha: str) -> bytes | None:
        return self.blobs.get(sha)

    def exists(self, sha: str) -> bool:
        return sha in self.blobs

    def delete(self, sha: str) -> None:
        self.blobs.pop(sha, None)

    def shas(self) -> Iterator[str]:
        yield from sorted(self.blobs)

    def describe(self) -> str:
        return "内存"


def store_for(settings: Settings) -> BlobStore:
    """The store ``BRANCHFLOW_BLOB_URL`` names (empty: the folder ``<data_dir>/files``)."""
    url = settings.blob_url.strip()
    if not url:
        return FolderStore(settings.data_dir / "files")
    parts = urlsplit(url)
    if parts.scheme == "file":
        return FolderStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise InvalidInput("BRANCHFLOW_BLOB_URL 须写成 s3://存储桶/前缀")
        return S3Store(parts.netloc, unquote(parts.path), endpoint_url=settings.s3_endpoint_url,
                       region=settings.s3_region, access_key_id=settings.s3_access_key_id,
                       secret_access_key=settings.s3_secret_access_key)
    raise InvalidInput("BRANCHFLOW_BLOB_URL 只支持 file:///路径 或 s3://存储桶/前缀")

"""The blob store's backends against one contract: a real folder, and an S3 API served over HTTP by moto's
server on 127.0.0.1 (boto3 talks to it as to any S3-compatible store)."""

from __future__ import annotations

import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from workflow.blobs import BlobStore, FolderStore, S3Store, sha256_hex, store_for
from workflow.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("boto3")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(params=["folder", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BlobStore:
    if request.param == "folder":
        return store_for(Settings(data_dir=tmp_path))
    endpoint = request.getfixturevalue("s3_endpoint")
    import boto3

    bucket = f"bf-{tmp_path.name.lower().replace('_', '-')[-40:]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=bucket)
    st = store_for(Settings(data_dir=tmp_path, blob_url=f"s3://{bucket}/branchflow/files", s3_endpoint_url=endpoint,
                            s3_region="us-east-1", s3_access_key_id="test", s3_secret_access_key="test"))
    assert isinstance(st, S3Store)
    return st


def test_round_trip_idempotent_and_listed(store: BlobStore) -> None:
    data = b"%PDF-1.4\n" + bytes(range(256)) * 40
    sha = store.put(data)
    assert sha == sha256_hex(data)
    assert store.put(data) == sha  # the same bytes again: one file
    assert store.exists(sha) and store.get(sha) == data
    assert list(store.shas()) == [sha]
    missing = "0" * 64
    assert not store.exists(missing) and store.get(missing) is None
    store.delete(sha)
    assert not store.exists(sha) and list(store.shas()) == []


def test_folder_layout_and_modes(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "files")
    sha = store.put(b"hello")
    path = tmp_path / "files" / sha[:2] / sha[2:4] / sha
    assert path.read_bytes() == b"hello"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for d in (tmp_path / "files", path.parent, path.parent.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [sha]  # no temp file left behind
    path.write_bytes(b"tampered")
    assert store.put(b"hello") == sha and path.read_bytes() == b"hello"  # a damaged copy is replaced


def test_a_bad_blob_url_is_refused_in_chinese(tmp_path: Path) -> None:
    from workflow.errors import InvalidInput

    with pytest.raises(InvalidInput, match="只支持"):
        store_for(Settings(data_dir=tmp_path, blob_url="ftp://x/y"))
    assert isinstance(store_for(Settings(data_dir=tmp_path, blob_url=f"file://{tmp_path}/b")), FolderStore)

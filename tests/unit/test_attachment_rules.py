"""The attachment rules of issue 16, as pure code: the type from the bytes, the limits, the names."""

from __future__ import annotations

import pytest

from tests.support import files
from workflow import limits
from workflow.attachments import FileRefused, FileTooLarge, check_batch, check_file, clean_name, refs_in
from workflow.blobs import InMemoryStore, sha256_hex


@pytest.mark.parametrize(("name", "data", "said"), [
    ("evidence.pdf", files.exe(), "Windows 可执行程序"),
    ("photo.jpg", files.HTML_WITH_SCRIPT, "网页或含脚本"),
    ("scan.png", b"#!/bin/sh\nrm -rf ~\n", "脚本"),
    ("report.pdf", b"\x7fELF\x02\x01\x01" + b"\x00" * 60, "Linux 可执行程序"),
    ("pic.png", b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>", "网页或含脚本"),
    ("notes.txt", b"just some text", "类型不受支持"),
    ("plan.docx", files.docx(macro=True), "宏"),
])
def test_refused_by_their_bytes_whatever_the_name(name: str, data: bytes, said: str) -> None:
    with pytest.raises(FileRefused) as err:
        check_file(name, data)
    assert said in err.value.message and name in err.value.message


def test_a_name_that_lies_about_a_good_file_is_refused() -> None:
    with pytest.raises(FileRefused, match="文件名与内容不符：内容是PNG 图片"):
        check_file("扫描件.pdf", files.png())


@pytest.mark.parametrize(("name", "data", "media"), [
    ("会议记录.pdf", files.pdf(), "application/pdf"),
    ("现场照片.PNG", files.png(), "image/png"),
    ("整改报告.docx", files.docx(), "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("photo.jpeg", b"\xff\xd8\xff\xe0" + b"\x00" * 100, "image/jpeg"),
])
def test_accepted_types_carry_hash_size_and_type(name: str, data: bytes, media: str) -> None:
    u = check_file(name, data)
    assert (u.ref.sha256, u.ref.size, u.ref.media_type, u.ref.name) == (sha256_hex(data), len(data), media, name)


def test_too_large_and_empty() -> None:
    with pytest.raises(FileTooLarge, match="过大"):
        check_file("big.pdf", b"%PDF-1.4\n" + b"0" * limits.ATTACHMENT_MAX_BYTES)
    with pytest.raises(FileRefused, match="空文件"):
        check_file("x.pdf", b"")


def test_names_are_cleaned_and_given_their_extension() -> None:
    assert clean_name("C:\\Users\\x\\..\\会议\u202e记录\x00.pdf") == "会议记录.pdf"
    assert clean_name("../../etc/passwd") == "passwd"
    assert check_file("扫描件", files.pdf()).ref.name == "扫描件.pdf"
    long = check_file("长" * 300 + ".pdf", files.pdf()).ref.name
    assert len(long) == 200 and long.endswith(".pdf")


def test_batch_limits_and_repeats() -> None:
    a, b = check_file("a.pdf", files.pdf("a")), check_file("b.png", files.png())
    assert [u.sha256 for u in check_batch([a, b, a], [])] == [a.sha256, b.sha256]
    many = [check_file(f"{i}.pdf", files.pdf(str(i))) for i in range(limits.ATTACHMENT_MAX_PER_RECORD + 1)]
    with pytest.raises(FileRefused, match="一次最多上传"):
        check_batch(many, [])
    with pytest.raises(FileTooLarge, match="该支部的附件合计"):
        check_batch([a], [{"sha256": "0" * 64, "size": limits.ATTACHMENT_MAX_PER_CASE_BYTES}])


def test_refs_are_found_anywhere_in_a_state() -> None:
    ref = check_file("a.pdf", files.pdf()).ref.model_dump()
    state = {"records": {"rectification": {"items": [{"attachments": [ref]}], "attachments": [ref]}},
             "inspections": [{"attachments": [ref]}]}
    assert len(list(refs_in(state))) == 3


def test_in_memory_store_is_content_addressed() -> None:
    store = InMemoryStore()
    sha = store.put(b"x")
    assert store.put(b"x") == sha == sha256_hex(b"x") and list(store.shas()) == [sha]

"""Small real files for the attachment tests, made here (no binary fixtures in the repository)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib


def png(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid PNG any browser decodes (one colour)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def pdf(text: str = "evidence") -> bytes:
    """A one-page PDF (enough for the type check and a viewer)."""
    content = f"BT /F1 12 Tf 20 50 Td ({text}) Tj ET".encode()
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] /Contents 4 0 R "
             b"/Resources << /Font << /F1 5 0 R >> >> >>"),
            b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref))
    return out.getvalue()


def docx(macro: bool = False) -> bytes:
    """A minimal .docx; the same bytes every time (fixed member times), so test ids are stable across
    pytest-xdist workers."""
    buf = io.BytesIO()
    names = ["[Content_Types].xml", "word/document.xml"] + (["word/vbaProject.bin"] if macro else [])
    data = {"[Content_Types].xml": b"<Types/>", "word/document.xml": b"<w:document/>",
            "word/vbaProject.bin": b"\x00" * 16}
    with zipfile.ZipFile(buf, "w") as z:
        for name in names:
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data[name])
    return buf.getvalue()


def exe() -> bytes:
    """The first bytes of a Windows program (MZ header, PE signature)."""
    return b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 44 + b"\x80\x00\x00\x00" \
        + b"PE\x00\x00" + b"\x00" * 200


HTML_WITH_SCRIPT = b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>"

"""Signed checkpoints: C2SP ``tlog-checkpoint`` text in a C2SP ``signed-note``, signed with Ed25519.

A checkpoint is the note text

    <origin>\\n<tree size, decimal>\\n<base64 of the 32-byte root hash>\\n

followed by a blank line and one signature line ``— <key name> <base64(key id ‖ signature)>`` (U+2014,
space), where the 4-byte key id is ``SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`` and the Ed25519
signature covers the note text including its final newline. The key name is the origin.

Keys are files, never database rows: the signer key file (``audit keygen``; mode 0600) holds
``PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 ‖ 32-byte seed)>`` and the verifier key auditors get
(``audit pubkey``) is ``<name>+<key id hex>+<base64(0x01 ‖ 32-byte public key)>`` — the formats of Go's
``golang.org/x/mod/sumdb/note``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select
from sqlalchemy.orm import Session

from workflow import sequencer
from workflow.errors import BranchflowError, InvalidInput, NotFound
from workflow.models import CheckpointRow

ALG_ED25519 = 0x01
DASH = "\u2014 "


class CheckpointError(BranchflowError):
    """检查点无效。"""

    exit_code = 7
    http_status = 422


def key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public).digest()[:4]


def _check_name(name: str) -> str:
    if not name or any(c.isspace() or c == "+" for c in name) or any(ord(c) < 0x20 for c in name):
        raise InvalidInput(f"密钥名称 {name!r} 无效：不能为空，不能含空白或“+”")
    return name


@dataclass(frozen=True)
class Verifier:
    name: str
    id: bytes
    public: bytes

    def __str__(self) -> str:
        return f"{self.name}+{self.id.hex()}+{base64.b64encode(bytes([ALG_ED25519]) + self.public).decode()}"

    def verify(self, msg: bytes, sig: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(sig, msg)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Signer:
    name: str
    seed: bytes

    @property
    def verifier(self) -> Verifier:
        pub = Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return Verifier(self.name, key_id(self.name, pub), pub)

    def __str__(self) -> str:
        v = self.verifier
        return f"PRIVATE+KEY+{self.name}+{v.id.hex()}+{base64.b64encode(bytes([ALG_ED25519]) + self.seed).decode()}"

    def sign(self, msg: bytes) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(msg)


def parse_verifier(text: str) -> Verifier:
    parts = text.strip().split("+", 2)  # base64 may hold "+"; names may not
    try:
        name, hex_id, b64 = parts
        kid = bytes.fromhex(hex_id)
        raw = base64.b64decode(b64, validate=True)
    except (ValueError, binascii.Error):
        raise InvalidInput(f"公钥 {text.strip()[:80]!r} 格式不对（应为 名称+8位十六进制+base64）") from None
    if len(kid) != 4 or len(raw) != 33 or raw[0] != ALG_ED25519:
        raise InvalidInput(f"公钥 {text.strip()[:80]!r} 不是 Ed25519 验证公钥")
    v = Verifier(_check_name(name), kid, raw[1:])
    if key_id(name, v.public) != kid:
        raise InvalidInput(f"公钥 {text.strip()[:80]!r} 的密钥 ID 与公钥不符")
    return v


def parse_signer(text: str) -> Signer:
    parts = text.strip().split("+", 4)
    try:
        p1, p2, name, _hex_id, b64 = parts
        raw = base64.b64decode(b64, validate=True)
    except (ValueError, binascii.Error):
        raise InvalidInput("签名私钥文件格式不对") from None
    if (p1, p2) != ("PRIVATE", "KEY") or len(raw) != 33 or raw[0] != ALG_ED25519:
        raise InvalidInput("签名私钥文件不是 Ed25519 私钥")
    return Signer(_check_name(name), raw[1:])


def generate(name: str) -> Signer:
    return Signer(_check_name(name), os.urandom(32))


def keygen(path: Path, name: str, *, force: bool = False) -> Signer:
    """Create the signer key file with mode 0600 (refusing to overwrite one unless ``force``)."""
    if path.exists() and not force:
        raise InvalidInput(f"签名私钥文件 {path} 已存在；轮换密钥请先按 docs/audit.md 备份旧公钥，再加 --force")
    path.parent.mkdir(parents=True, exist_ok=True)
    signer = generate(name)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(str(signer) + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return signer


def load_signer(path: Path) -> Signer:
    if not path.exists():
        raise NotFound(f"找不到签名私钥文件 {path}：请先运行 `branchflow audit keygen`（或设置 BRANCHFLOW_AUDIT_KEY_FILE）")
    return parse_signer(path.read_text("utf-8"))


# --- notes and checkpoints -------------------------------------------------------------------------

def checkpoint_text(origin: str, size: int, root: bytes) -> str:
    return f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"


def sign_note(text: str, signer: Signer) -> str:
    sig = signer.sign(text.encode("utf-8"))
    return f"{text}\n{DASH}{signer.name} {base64.b64encode(signer.verifier.id + sig).decode()}\n"


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    note: str
    key: str  # the verifier key (name+id) that signed it

    @property
    def label(self) -> str:
        return f"检查点（大小 {self.size}，根哈希 {self.root.hex()[:16]}…）"


def open_note(note: str, verifiers: list[Verifier]) -> tuple[str, Verifier]:
    """The note's text and the trusted key that signed it; CheckpointError if none did or a signature is bad."""
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise CheckpointError("检查点含有控制字符：不是有效的签名文本")
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise CheckpointError("检查点格式不对：缺少签名行")
    text, sigs = note[: cut + 1], note[cut + 2:].splitlines()
    if not sigs:
        raise CheckpointError("检查点没有签名")
    seen_keys: list[str] = []
    for line in sigs:
        if not line.startswith(DASH):
            raise CheckpointError(f"签名行格式不对：{line[:60]!r}")
        try:
            name, b64 = line[len(DASH):].split(" ")
            raw = base64.b64decode(b64, validate=True)
        except (ValueError, binascii.Error):
            raise CheckpointError(f"签名行格式不对：{line[:60]!r}") from None
        if len(raw) < 5:
            raise CheckpointError("签名行太短")
        kid, sig = raw[:4], raw[4:]
        seen_keys.append(f"{name}+{kid.hex()}")
        for v in verifiers:
            if v.name == name and v.id == kid:
                if not v.verify(text.encode("utf-8"), sig):
                    raise CheckpointError(f"签名无效：检查点内容或签名被改动过（密钥 {name}+{kid.hex()}）")
                return text, v
    trusted = "、".join(f"{v.name}+{v.id.hex()}" for v in verifiers) or "（无）"
    raise CheckpointError(f"检查点不是由受信任的密钥签名的（签名密钥 {'、'.join(seen_keys)}；受信任的密钥 {trusted}）")


def parse_checkpoint(note: str, verifiers: list[Verifier], *, origin: str | None = None) -> Checkpoint:
    text, v = open_note(note, verifiers)
    lines = text.split("\n")
    try:
        org, size_s, root_b64 = lines[0], lines[1], lines[2]
        if not size_s.isdigit() or (size_s != "0" and size_s.startswith("0")):
            raise ValueError
        size = int(size_s)
        root = base64.b64decode(root_b64, validate=True)
    except (IndexError, ValueError, binascii.Error):
        raise CheckpointError("检查点正文格式不对（应为：来源行、树大小、base64 根哈希）") from None
    if len(root) != 32:
        raise CheckpointError("检查点的根哈希不是 32 字节")
    if origin is not None and org != origin:
        raise CheckpointError(f"检查点来自另一个日志（来源 {org!r}，本系统为 {origin!r}）")
    return Checkpoint(origin=org, size=size, root=root, note=note, key=f"{v.name}+{v.id.hex()}")


def make(session: Session, signer: Signer, *, reason: str, now: dt.datetime) -> CheckpointRow:
    """Sequence every entry, sign the tree head and store the checkpoint (in the caller's transaction)."""
    size = sequencer.integrate(session)
    root = sequencer.root_hash(session, size)
    note = sign_note(checkpoint_text(signer.name, size, root), signer)
    row = CheckpointRow(size=size, root_hash=root.hex(), note=note, reason=reason, made_at=now)
    session.add(row)
    session.flush()
    return row


def latest(session: Session) -> CheckpointRow | None:
    return session.scalars(select(CheckpointRow).order_by(CheckpointRow.id.desc()).limit(1)).first()

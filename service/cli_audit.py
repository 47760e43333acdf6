"""CLI commands of the audit (registered by service.cli): the chains, the Merkle log, checkpoints, proofs.

    branchflow audit verify [--campaign C] [--branch B] [--checkpoint FILE …] [--key VKEY …] [--workers N] [--files]
    branchflow audit keygen [--force]          the signer key file (BRANCHFLOW_AUDIT_KEY_FILE), mode 0600
    branchflow audit pubkey                    the verifier key for auditors (signed-note format)
    branchflow audit checkpoint -o FILE        sequence every entry, sign, store and write a checkpoint
    branchflow audit prove BRANCH SEQ          an inclusion proof of one event against a checkpoint

Exit codes as elsewhere (:mod:`workflow.errors`); a failed verification exits 7.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from workflow import audit, checkpoint, merkle, sequencer
from workflow.errors import InvalidInput, NotFound


def _ctx() -> Any:
    return click.get_current_context().find_root().obj


def trusted_keys(settings: Any, extra: tuple[str, ...]) -> list[checkpoint.Verifier]:
    """The current key's verifier (if the key file is there) and every ``--key`` given (old keys)."""
    keys = [checkpoint.parse_verifier(k) for k in extra]
    path = settings.audit_key_path
    if path.exists():
        keys.append(checkpoint.load_signer(path).verifier)
    if not keys:
        raise NotFound(f"没有可用于校验签名的公钥：找不到签名私钥文件 {path}，也没有用 --key 给出公钥")
    return keys


def read_checkpoints(files: tuple[str, ...], keys: list[checkpoint.Verifier], origin: str
                     ) -> tuple[list[tuple[str, checkpoint.Checkpoint]], list[tuple[str, str]]]:
    good: list[tuple[str, checkpoint.Checkpoint]] = []
    bad: list[tuple[str, str]] = []
    for f in files:
        p = Path(f)
        try:
            note = p.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            bad.append((f, f"无法读取：{exc}"))
            continue
        try:
            good.append((f, checkpoint.parse_checkpoint(note, keys, origin=origin)))
        except checkpoint.CheckpointError as exc:
            bad.append((f, exc.message))
    return good, bad


def proof_json(entry: sequencer.Entry, note: str, size: int, proof: list[bytes]) -> dict[str, Any]:
    return {
        "entry": entry.where, "leaf_index": entry.leaf_idx, "tree_size": size,
        "leaf_data": entry.data.decode("utf-8"), "leaf_hash": base64.b64encode(merkle.leaf_hash(entry.data)).decode(),
        "inclusion_proof": [base64.b64encode(h).decode() for h in proof], "checkpoint": note,
    }


def register(cli: click.Group) -> None:
    from service.cli import campaign_option, echo_json, json_option, now_option, parse_now

    @cli.group("audit")
    def audit_() -> None:
        """审计：校验哈希链、默克尔日志与签名检查点，生成证明。"""

    @audit_.command("verify")
    @campaign_option
    @click.option("--branch", default=None, help="只校验一个党支部")
    @click.option("--checkpoint", "files", multiple=True, help="审计员保存的检查点文件（可多次给出）：证明今天的日志是它们的追加延续")
    @click.option("--key", "keys", multiple=True, help="另外信任的公钥（如轮换前的旧公钥，audit pubkey 的输出；可多次给出）")
    @click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="并行校验的进程数（按党支部分段）")
    @click.option("--files", "check_files", is_flag=True,
                  help="同时校验附件：事件中登记的每个文件都在存储中，且内容与登记的哈希值一致")
    @json_option
    def audit_verify(campaign: str | None, branch: str | None, files: tuple[str, ...], keys: tuple[str, ...],
                     workers: int, check_files: bool, as_json: bool) -> None:
        """校验每个党支部的哈希链、基础数据记录，核对当前状态表与事件重放结果一致；给出 --checkpoint 时
        还重建默克尔树，证明今天的日志是每个检查点的追加延续。"""
        c = _ctx()
        t0 = time.perf_counter()
        if files and (campaign or branch):
            raise InvalidInput("--checkpoint 校验的是整个日志，不能与 --campaign/--branch 同用")
        with c.tx() as s:  # sequence what was written since the last sweep, so the whole log is covered
            sequencer.integrate(s)
        with c.tx() as s:
            if workers > 1 and not (campaign or branch):
                report = audit.verify_parallel(s, c.settings.url, workers=workers)
            else:
                report = audit.verify(s, campaign_code=campaign, branch_code=branch)
            log: audit.LogReport | None = None
            bad: list[tuple[str, str]] = []
            if files:
                good, bad = read_checkpoints(files, trusted_keys(c.settings, keys), c.settings.audit_origin)
                log = audit.verify_log(s, good)
            from workflow import attachments, blobs

            n_files, file_problems = 0, list[attachments.FileProblem]()
            if check_files:  # issue 16: the attached files against the hashes in their events
                n_files, file_problems = attachments.check_store(s, blobs.store_for(c.settings))
        elapsed = time.perf_counter() - t0
        ok = report.ok and not bad and (log is None or log.ok) and not file_problems
        if as_json:
            echo_json({
                "ok": ok, "cases": report.cases, "events": report.events, "seconds": round(elapsed, 3),
                "problems": [p.__dict__ for p in report.problems],
                "checkpoints": ([{"file": f, "ok": r is None, "problem": r} for f, r in log.results] if log else [])
                + [{"file": f, "ok": False, "problem": m} for f, m in bad],
                "log": ({"size": log.size, "problems": log.problems} if log else None),
                **({"files": {"checked": n_files, "problems": [p.__dict__ for p in file_problems]}} if check_files else {}),
            })
        else:
            rate = report.events / elapsed if elapsed > 0 else 0.0
            click.echo(f"已校验 {report.cases} 个党支部、{report.events} 条事件（{elapsed:.2f} 秒，每秒 {rate:,.0f} 条）")
            if log is not None:
                click.echo(f"默克尔日志共 {log.size} 项")
                for f, r in log.results:
                    click.echo(f"  检查点 {f}：" + ("一致（今天的日志是它的追加延续）" if r is None else f"不一致——{r}"))
            for f, m in bad:
                click.echo(f"  检查点 {f}：无效——{m}")
            if check_files:
                click.echo(f"已校验附件 {n_files} 个" + (f"，其中 {len({p.sha256 for p in file_problems})} 个有问题"
                                                      if file_problems else "：都在存储中，内容与哈希值一致"))
                for fp in file_problems:
                    what = "存储中缺失" if fp.problem == "missing" else "内容与哈希值不符（已损坏或被篡改）"
                    click.echo(f"  附件“{fp.name}”（{fp.sha256}，党支部 {fp.branch} 第 {fp.seq} 条事件）：{what}")
            if log is not None:
                for m in log.problems:
                    click.echo(f"  日志：{m}")
            if ok:
                click.echo("校验通过：哈希链完整，当前状态与重放结果一致" + ("，与所给检查点一致" if files else ""))
            else:
                n = len(report.problems) + len(bad) + len(file_problems) + (0 if log is None else
                                                        len(log.problems) + sum(r is not None for _, r in log.results))
                click.echo(f"校验失败：发现 {n} 处问题")
                bad_chains = sorted({(p.campaign, p.branch) for p in report.problems})
                if len(bad_chains) > 1:
                    click.echo(f"  有问题的链共 {len(bad_chains)} 条")
                for p in report.problems:
                    click.echo(f"  {p}")
        if not ok:
            sys.exit(7)

    @audit_.command("keygen")
    @click.option("--force", is_flag=True, help="覆盖已有的私钥文件（轮换密钥；先按 docs/audit.md 保存旧公钥）")
    def audit_keygen(force: bool) -> None:
        """生成检查点签名私钥（Ed25519），写入 BRANCHFLOW_AUDIT_KEY_FILE（权限 0600），输出公钥。"""
        s = _ctx().settings
        signer = checkpoint.keygen(s.audit_key_path, s.audit_origin, force=force)
        click.echo(f"已生成签名私钥 {s.audit_key_path}（权限 0600；请放在数据库服务器之外并备份）")
        click.echo("公钥（交给审计员）：")
        click.echo(str(signer.verifier))

    @audit_.command("pubkey")
    def audit_pubkey() -> None:
        """输出检查点签名公钥（signed-note 验证公钥格式），交给审计员。"""
        click.echo(str(checkpoint.load_signer(_ctx().settings.audit_key_path).verifier))

    @audit_.command("checkpoint")
    @click.option("--output", "-o", required=True, help="写入检查点的文件")
    @now_option
    def audit_checkpoint(output: str, now_s: str | None) -> None:
        """把新写入的记录编入默克尔日志，签名生成检查点，保存在数据库中并写入文件。"""
        c = _ctx()
        signer = checkpoint.load_signer(c.settings.audit_key_path)
        path = Path(output)
        if not path.parent.exists():
            raise InvalidInput(f"输出目录 {path.parent} 不存在")
        with c.tx() as s:
            row = checkpoint.make(s, signer, reason="manual", now=parse_now(now_s))
        path.write_text(row.note, "utf-8")
        click.echo(f"已生成检查点：日志共 {row.size} 项，根哈希 {row.root_hash}；写入 {path}")

    @audit_.command("prove")
    @click.argument("branch")
    @click.argument("seq", type=click.IntRange(1))
    @campaign_option
    @click.option("--checkpoint", "file", default=None, help="对照的检查点文件（默认最新保存的检查点）")
    @click.option("--output", "-o", default=None, help="写入文件（默认输出到屏幕）")
    def audit_prove(branch: str, seq: int, campaign: str | None, file: str | None, output: str | None) -> None:
        """给出一条事件在检查点所对应的默克尔树中的包含证明（JSON）。"""
        c = _ctx()
        with c.tx() as s:
            entry = sequencer.event_entry(s, branch, seq, campaign)
            if file:
                keys = trusted_keys(c.settings, ())
                cp = checkpoint.parse_checkpoint(Path(file).read_text("utf-8"), keys, origin=c.settings.audit_origin)
                note, size = cp.note, cp.size
            else:
                row = checkpoint.latest(s)
                if row is None:
                    raise NotFound("还没有检查点：请先运行 `branchflow audit checkpoint -o FILE`")
                note, size = row.note, row.size
            if entry.leaf_idx >= size:
                raise NotFound(f"{entry.where} 在该检查点（大小 {size}）之后才写入日志：请用更新的检查点")
            if size > sequencer.tree_size(s):
                raise InvalidInput(f"检查点的树大小 {size} 大于今天的日志（{sequencer.tree_size(s)}）：日志被截断")
            proof = merkle.prove_inclusion(size, entry.leaf_idx, sequencer.DbHashes(s))
        text = json.dumps(proof_json(entry, note, size, proof), ensure_ascii=False, indent=2)
        if output:
            Path(output).write_text(text + "\n", "utf-8")
            click.echo(f"已写入 {output}")
        else:
            click.echo(text)

    @audit_.command("consistency")
    @click.option("--from", "old_file", required=True, help="较早的检查点文件")
    @click.option("--to", "new_file", default=None, help="较新的检查点文件（默认最新保存的检查点）")
    @click.option("--output", "-o", default=None, help="写入文件（默认输出到屏幕）")
    def audit_consistency(old_file: str, new_file: str | None, output: str | None) -> None:
        """给出两个检查点之间的一致性证明（JSON）：较新的日志是较早日志的追加延续。"""
        c = _ctx()
        keys = trusted_keys(c.settings, ())
        with c.tx() as s:
            old = checkpoint.parse_checkpoint(Path(old_file).read_text("utf-8"), keys, origin=c.settings.audit_origin)
            if new_file:
                new = checkpoint.parse_checkpoint(Path(new_file).read_text("utf-8"), keys, origin=c.settings.audit_origin)
                note, size = new.note, new.size
            else:
                row = checkpoint.latest(s)
                if row is None:
                    raise NotFound("还没有检查点：请先运行 `branchflow audit checkpoint -o FILE`")
                note, size = row.note, row.size
            data = consistency_json(s, old.size, size, note)
        text = json.dumps(data, ensure_ascii=False, indent=2)
        if output:
            Path(output).write_text(text + "\n", "utf-8")
            click.echo(f"已写入 {output}")
        else:
            click.echo(text)


def consistency_json(session: Any, old_size: int, size: int, note: str) -> dict[str, Any]:
    if old_size > size:
        raise InvalidInput(f"较早的检查点（大小 {old_size}）比较新的（大小 {size}）还大：请交换 --from 与 --to")
    if size > sequencer.tree_size(session):
        raise InvalidInput(f"检查点的树大小 {size} 大于今天的日志（{sequencer.tree_size(session)}）：日志被截断")
    proof = merkle.prove_consistency(size, old_size, sequencer.DbHashes(session))
    return {"old_size": old_size, "new_size": size, "consistency_proof": [base64.b64encode(h).decode() for h in proof],
            "checkpoint": note}

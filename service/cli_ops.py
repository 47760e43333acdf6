"""CLI commands for operators: ``status``, ``backup FILE``, ``restore FILE`` (registered by service.cli)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

TZ = ZoneInfo("Asia/Shanghai")
EXIT_NOT_READY = 9
ROLE_TEXT = {"leader": "本节点是调度主节点（扫描提醒）", "follower": "本节点是从节点（另一节点扫描提醒）",
             "off": "本命令不运行定时任务"}


def _ctx() -> Any:
    """The root command's context object (``service.cli.Ctx``: settings, engine, ``tx()``)."""
    return click.get_current_context().find_root().obj


def _local(s: str | None) -> str:
    if not s:
        return "从未"
    t = dt.datetime.fromisoformat(s).astimezone(TZ)
    return t.strftime("%Y-%m-%d %H:%M:%S") + "（北京时间）"


def status_lines(r: dict[str, Any], where: str) -> list[str]:
    """``readiness`` in Chinese, one fact per line (what ``branchflow status`` prints)."""
    lines = [f"branchflow 运行状态（{_local(r['time'])}）"]
    db = r["database"]
    if not db["reachable"]:
        lines.append(f"  数据库：无法连接（{db['dialect']}）{where}：{db.get('error', '')}")
    else:
        lines.append(f"  数据库：可连接（{db['dialect']}）{where}")
        m = r["migrations"]
        if m["current"] is None:
            lines.append(f"  数据库版本：尚未初始化（程序需要 {m['head']}）")
        else:
            lines.append(f"  数据库版本：{m['current']}" + ("（最新）" if m["ok"] else f"（落后于 {m['head']}）"))
        s = r["scheduler"]
        lead = s.get("leader_present")
        tail = {True: "；有节点持有调度锁、正在扫描提醒", False: "；没有任何节点持有调度锁（没有在运行的 serve？）",
                None: "；单节点（SQLite），请看最近一次扫描时间"}[lead]
        lines.append(f"  定时任务：{ROLE_TEXT.get(s['role'], s['role'])}{tail}")
    if "outbox" in r:
        o = r["outbox"]
        oldest = f"（最早应发于 {_local(o['oldest_pending'])}）" if o["oldest_pending"] else ""
        lines.append(f"  邮件：待发送 {o['backlog']}{oldest}，暂扣 {o['held']}，投递失败 {o['dead']}"
                     f"（未报告组织部 {o['dead_unreported']}），已发送 {o['by_status'].get('sent', 0)}")
        lines.append(f"  最近一次扫描：{_local(r['last_sweep'])}")
    if r["problems"]:
        lines.append("  需要处理：")
        lines += [f"    · {p}" for p in r["problems"]]
    lines.append("  结论：" + ("可以工作" if r["ready"] else "不能工作（见上）"))
    return lines


def register(cli: click.Group) -> None:
    from service.cli import json_option

    @cli.command("status")
    @json_option
    def status(as_json: bool) -> None:
        """运行状态：数据库能否连接、版本是否最新、定时任务、邮件队列（待发送、暂扣、投递失败）、最近一次扫描。

        与网页服务的 /readyz 相同；不能工作时退出码为 9。
        """
        from service.health import readiness

        c = _ctx()
        r = readiness(c.engine)
        if as_json:
            click.echo(json.dumps(r, ensure_ascii=False, indent=2))
        else:
            where = c.engine.url.render_as_string(hide_password=True)
            click.echo("\n".join(status_lines(r, where)))
        if not r["ready"]:
            sys.exit(EXIT_NOT_READY)

    @cli.command("backup")
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option("--force", is_flag=True, help="覆盖已存在的文件")
    def backup(file: str, force: bool) -> None:
        """备份数据库到 FILE（权限 0600），服务运行时也可以做：SQLite 用在线备份，PostgreSQL 用 pg_dump。

        签名密钥（secret.key、审计签名私钥）不在备份里，请另行保存（见 docs/deploy.md）。
        """
        from service import backup as b

        c = _ctx()
        dest = Path(file)
        if c.engine.dialect.name == "sqlite":
            summary = b.backup_sqlite(b.sqlite_path(c.engine), dest, force=force)
            how = "SQLite 在线备份，完整性检查通过"
        elif c.engine.dialect.name == "postgresql":
            summary, tool = b.backup_postgres(c.engine, dest, force=force)
            how = f"{tool}，PostgreSQL {b.server_major(c.engine)} 版，自定义格式（用 branchflow restore 或 pg_restore 恢复）"
        else:  # pragma: no cover - only the two supported databases
            raise click.ClickException(f"不支持备份 {c.engine.dialect.name} 数据库")
        click.echo(f"已备份到 {summary.path}（{summary.size} 字节，权限 0600；{how}）")
        click.echo(f"  数据库版本 {summary.revision}，{summary.branches} 个党支部，{summary.events} 条事件")
        click.echo("  注意：签名密钥（secret.key、审计签名私钥）不在备份中，请另行妥善保存")

    @cli.command("restore")
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option("--force", is_flag=True, help="数据库中已有数据时也用备份覆盖")
    def restore(file: str, force: bool) -> None:
        """从 FILE 恢复数据库。数据库中已有数据时拒绝覆盖，除非加 --force。恢复前请先停止服务。"""
        from service import backup as b
        from workflow.migrate import current, head

        c = _ctx()
        src = Path(file)
        if c.engine.dialect.name == "sqlite":
            summary = b.restore_sqlite(src, b.sqlite_path(c.engine), c.engine, force=force)
            click.echo(f"已从 {src} 恢复到 {summary.path}：数据库版本 {summary.revision}，"
                       f"{summary.branches} 个党支部，{summary.events} 条事件")
        else:
            tool = b.restore_postgres(src, c.engine, force=force)
            click.echo(f"已用 {tool} 从 {src} 恢复 PostgreSQL 数据库")
        have, want = current(c.engine), head()
        if have != want:
            click.echo(f"  备份的数据库版本 {have} 早于程序的 {want}：请运行 branchflow init 升级")
        click.echo("  建议接着运行 branchflow audit verify 校验恢复的数据")

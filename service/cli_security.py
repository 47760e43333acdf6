"""CLI commands of log-in security (issue 14), added to the ``user`` group of :mod:`service.cli_web`:

``user unlock EMAIL --as ORG``   lift a temporary lockout (the organisation department)
``user locks``                   accounts locked now
``user sessions [EMAIL]``        live page sessions: when, from where, which browser
``user logout-all EMAIL --as ORG``  end every session and revoke every API token of a person
``user tokens [EMAIL]``          API tokens: name, created, expires, last used, revoked
``user token-revoke ID --as ORG``   revoke one API token
``user logins [--email E]``      the record of log-ins (also ``audit logins``): for auditors

Times are the real clock (the lockout and the sessions run on it), shown in Beijing time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from states.base import Role
from workflow.errors import Forbidden

TZ = dt.timezone(dt.timedelta(hours=8))


def _ctx() -> Any:
    return click.get_current_context().find_root().obj


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _local(t: dt.datetime | None) -> str:
    return t.astimezone(TZ).strftime("%Y-%m-%d %H:%M:%S") if t else "—"


def _require(s: Any, email: str, *roles: Role) -> str:
    from workflow.service import actor_for

    actor = actor_for(s, email)
    if not any(r in roles for r, _ in actor.roles):
        names = "、".join({Role.org_department: "组织部", Role.auditor: "审计人员"}.get(r, r.value) for r in roles)
        raise Forbidden(f"{actor.name}（{actor.email}）无权执行此操作：须为{names}")
    return actor.email


def register(cli: click.Group) -> None:
    from service.cli import echo_json, json_option

    user = cli.commands.get("user")
    if not isinstance(user, click.Group):  # service.cli_web defines the group; be usable without it
        @cli.group("user")
        def user_group() -> None:
            """登录账号。"""

        user = user_group

    @user.command("unlock")
    @click.argument("email")
    @click.option("--as", "as_email", required=True, help="操作人邮箱（须为组织部）")
    def unlock(email: str, as_email: str) -> None:
        """解除账号因连续密码错误造成的临时锁定（并重新计数）。"""
        from service import throttle

        with _ctx().tx() as s:
            by = _require(s, as_email, Role.org_department)
            was = throttle.unlock(s, email, now=_now(), by=f"cli:{by}")
        click.echo(f"已解除 {email.strip().lower()} 的锁定" if was else f"{email.strip().lower()} 未被锁定；失败次数已重新计数")

    @user.command("locks")
    def locks() -> None:
        """列出当前被临时锁定的账号。"""
        from service import throttle

        with _ctx().tx() as s:
            rows = throttle.locks(s, now=_now())
            if not rows:
                click.echo("当前没有被锁定的账号")
            for r in rows:
                click.echo(f"{r.email}  锁定于 {_local(r.locked_at)}  至 {_local(r.locked_until)}  连续失败 {r.failures} 次")

    @user.command("sessions")
    @click.argument("email", required=False)
    @json_option
    def sessions_(email: str | None, as_json: bool) -> None:
        """列出有效的网页登录会话（时间、地址、浏览器）。"""
        from service import sessions
        from service.security import policy_of

        with _ctx().tx() as s:
            rows = sessions.live_sessions(s, now=_now(), policy=policy_of(_ctx().settings), email=email)
            data: list[dict[str, Any]] = [{"id": r.id, "email": e, "created_at": _local(r.created_at), "last_seen_at": _local(r.last_seen_at),
                     "ip": r.ip, "user_agent": r.user_agent} for r, e in rows]
        if as_json:
            echo_json(data)
            return
        if not data:
            click.echo("没有有效的登录会话")
        for d in data:
            click.echo(f"#{d['id']} {d['email']}  登录 {d['created_at']}  最近 {d['last_seen_at']}  {d['ip'] or '—'}  "
                       f"{d['user_agent'][:60]}")

    @user.command("logout-all")
    @click.argument("email")
    @click.option("--as", "as_email", required=True, help="操作人邮箱（须为组织部）")
    def logout_all(email: str, as_email: str) -> None:
        """结束某人的全部登录会话并撤销其全部 API 令牌（立即生效）。"""
        from service import sessions

        with _ctx().tx() as s:
            _require(s, as_email, Role.org_department)
            n, t = sessions.end_all(s, email, now=_now(), reason="admin", tokens=True)
        click.echo(f"已结束 {email.strip().lower()} 的 {n} 个登录会话，撤销 {t} 个 API 令牌")

    @user.command("tokens")
    @click.argument("email", required=False)
    @json_option
    def tokens(email: str | None, as_json: bool) -> None:
        """列出 API 令牌：名称、签发、到期、最近使用、是否撤销（令牌本身不保存，无法再次显示）。"""
        from service import sessions

        now = _now()
        with _ctx().tx() as s:
            data = [{"id": r.id, "email": e, "name": r.name, "created_at": _local(r.created_at),
                     "expires_at": _local(r.expires_at), "last_used_at": _local(r.last_used_at),
                     "status": "已撤销" if r.revoked_at else "已过期" if r.expires_at <= now else "有效"}
                    for r, e in sessions.tokens(s, email=email)]
        if as_json:
            echo_json(data)
            return
        if not data:
            click.echo("没有 API 令牌")
        for d in data:
            click.echo(f"#{d['id']} {d['email']}  {d['name']}  签发 {d['created_at']}  到期 {d['expires_at']}  "
                       f"最近使用 {d['last_used_at']}  {d['status']}")

    @user.command("token-revoke")
    @click.argument("token_id", type=int)
    @click.option("--as", "as_email", required=True, help="操作人邮箱（须为组织部）")
    def token_revoke(token_id: int, as_email: str) -> None:
        """撤销一个 API 令牌（编号见 user tokens），立即生效。"""
        from service import sessions

        with _ctx().tx() as s:
            _require(s, as_email, Role.org_department)
            row = sessions.revoke_token(s, token_id, now=_now())
        click.echo(f"已撤销令牌 #{row.id}（{row.name}）")

    @click.command("logins")
    @click.option("--email", default=None, help="只看这个账号")
    @click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True, help="最多显示多少条")
    @json_option
    def logins(email: str | None, limit: int, as_json: bool) -> None:
        """登录记录：时间、账号、客户端地址、方式、结果（成功、密码错误、过于频繁、锁定、解除锁定；从不记录密码）。"""
        from service import throttle

        with _ctx().tx() as s:
            data = [{"at": _local(r.at), "email": r.email, "ip": r.ip, "via": throttle.VIA_LABELS.get(r.via, r.via),
                     "outcome": throttle.OUTCOME_LABELS.get(r.outcome, r.outcome)}
                    for r in throttle.recent(s, email=email, limit=limit)]
        if as_json:
            echo_json(data)
            return
        if not data:
            click.echo("没有登录记录")
        for d in data:
            click.echo(f"{d['at']}  {d['email']}  {d['ip'] or '—'}  {d['via']}  {d['outcome']}")

    user.add_command(logins)
    audit = cli.commands.get("audit")
    if isinstance(audit, click.Group) and "logins" not in audit.commands:
        audit.add_command(logins)

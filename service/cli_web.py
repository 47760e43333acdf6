"""CLI commands of the web capability: ``user add``, ``user passwd`` and ``web`` (serve pages and API)."""

from __future__ import annotations

from typing import Any

import click

from states.base import Role
from workflow.errors import InvalidInput


def _ctx() -> Any:
    """The root command's context object (``service.cli.Ctx``: settings, engine, ``tx()``)."""
    return click.get_current_context().find_root().obj


def register(cli: click.Group) -> None:
    from service.cli import parse_now

    @cli.group()
    def user() -> None:
        """登录账号：创建账号、设置密码。"""

    @user.command("add")
    @click.argument("email")
    @click.option("--name", required=True, help="姓名")
    @click.option("--password", prompt="密码", hide_input=True, confirmation_prompt="再次输入密码",
                  help="登录密码（至少 12 位，不能是常用密码；不给则提示输入）")
    @click.option("--role", "roles", multiple=True, type=click.Choice([r.value for r in Role]), help="角色（可多次）")
    @click.option("--scope", default="", help="范围：党支部/党总支/党委编码（审计人员不需要）")
    def user_add(email: str, name: str, password: str, roles: tuple[str, ...], scope: str) -> None:
        """创建（或更新）登录账号，例如：user add a@x.cn --name 张三 --role committee_member --scope C1"""
        from service.auth import hash_password
        from workflow.people import add_person
        from workflow.repository import person_by_email

        digest = hash_password(password, email=email, name=name)  # the rules of service.passwords
        with _ctx().tx() as s:
            granted = add_person(s, email, name, [Role(r) for r in roles], scope)
            person_by_email(s, email.strip().lower()).password_hash = digest
        extra = "，".join(granted) if granted else "无新增角色"
        click.echo(f"已创建登录账号 {name} <{email.strip().lower()}>：{extra}")

    @user.command("passwd")
    @click.argument("email")
    @click.option("--password", prompt="新密码", hide_input=True, confirmation_prompt="再次输入新密码",
                  help="新密码（至少 12 位，不能是常用密码；不给则提示输入）")
    def user_passwd(email: str, password: str) -> None:
        """设置或重置密码（此前登录的会话和令牌随即失效）。"""
        from service.auth import set_password

        with _ctx().tx() as s:
            set_password(s, email, password)
        click.echo(f"已为 {email.strip().lower()} 设置新密码；此前的登录已失效")

    @user.command("token")
    @click.argument("email")
    @click.option("--days", type=int, default=30, show_default=True, help="有效天数（1–366）")
    @click.option("--name", "token_name", default="", help="令牌名称（例如调用它的系统；默认“N 天令牌”）")
    def user_token(email: str, days: int, token_name: str) -> None:
        """为其他系统签发 API 令牌（以该账号的身份和角色调用；改密码、改角色或撤销即作废；user tokens 列出）。"""
        from service.auth import Signer, secret_key
        from workflow.repository import person_by_email

        settings = _ctx().settings
        with _ctx().tx() as s:
            person = person_by_email(s, email)
            if not person.password_hash:
                raise InvalidInput(f"{person.email} 尚未设置密码：先用 user passwd 设置，令牌随密码更改而作废")
            token = Signer(secret_key(settings)).issue(s, person, api=True, days=days, name=token_name or None)
        click.echo(token)
        click.echo(f"以上为 {person.email} 的 API 令牌，{days} 天内有效；请求头：Authorization: Bearer <令牌>", err=True)

    @cli.command("web")
    @click.option("--host", default="127.0.0.1", show_default=True, help="监听地址")
    @click.option("--port", default=8000, type=int, show_default=True, help="端口")
    @click.option("--now", "now_s", default=None, help="固定当前时间（演示用，ISO 格式）；默认系统时间")
    def web(host: str, port: int, now_s: str | None) -> None:
        """启动网页和 HTTP API（不含定时任务；完整服务请用 branchflow serve）。"""
        import uvicorn

        from service.app import create_app

        fixed = parse_now(now_s) if now_s else None
        app = create_app(_ctx().settings, engine=_ctx().engine, clock=(lambda: fixed) if fixed else None)
        click.echo(f"branchflow 网页：http://{host}:{port}/  API 文档：http://{host}:{port}/api/docs")
        from service.logs import uvicorn_options

        uvicorn.run(app, host=host, port=port, **uvicorn_options(_ctx().settings))

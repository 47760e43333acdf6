"""The `branchflow` command. Each command opens one transaction, commits on success, and maps errors to
exit codes (see :mod:`workflow.errors`). Every command that depends on time takes ``--now``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from service import cli_lang
from states.base import ROLE_LABELS, Role, Stage
from workflow import audit, importer, service, views
from workflow.db import make_engine, session_factory
from workflow.errors import BranchflowError, Conflict, InvalidInput, from_json_error
from workflow.settings import Settings

DEFAULT_TZ = ZoneInfo("Asia/Shanghai")
cli_lang.install()  # click's own words in Chinese (before any command is declared)


def parse_now(value: str | None) -> dt.datetime:
    """``--now``: ISO date or datetime; naive values are Asia/Shanghai; a bare date means 00:00 that day."""
    if value is None:
        return dt.datetime.now(dt.UTC)
    try:
        if len(value) == 10:
            t = dt.datetime.combine(dt.date.fromisoformat(value), dt.time(0, 0))
        else:
            t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"时间 {value!r} 无效（示例：2026-04-18 或 2026-04-18T09:00 或 2026-04-18T09:00+08:00）") from None
    return t if t.tzinfo else t.replace(tzinfo=DEFAULT_TZ)


def parse_date(value: str, what: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{what} {value!r} 不是日期（格式：2026-04-18）") from None


class Ctx:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.settings.url)
        return self._engine

    @contextmanager
    def tx(self) -> Iterator[Session]:
        with session_factory(self.engine)() as s, s.begin():
            yield s

    def close(self) -> None:
        """Give the pooled connections back when the command ends (also when it runs in-process)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


HELP_TEXT = "显示此帮助并退出"


class ChineseHelpCommand(click.Command):
    """A command whose --help option speaks Chinese like the rest of the CLI (service/cli_lang.py: click's
    words, usage errors, argument names)."""

    context_class = cli_lang.ChineseContext

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("options_metavar", "[选项]")
        super().__init__(*args, **kwargs)
        cli_lang.label_arguments(self)

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        opt = super().get_help_option(ctx)
        if opt is not None:
            opt.help = HELP_TEXT
        return opt


class BranchflowGroup(click.Group):
    """Translates our errors once: message to stderr, the error's exit code. Its commands and subgroups
    (also those the extension modules register) get Chinese --help text."""

    command_class = ChineseHelpCommand
    group_class = type  # subgroups are BranchflowGroups too
    context_class = cli_lang.ChineseContext

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("options_metavar", "[选项]")
        kwargs.setdefault("subcommand_metavar", "命令 [参数]…")
        super().__init__(*args, **kwargs)
        cli_lang.label_arguments(self)

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        opt = super().get_help_option(ctx)
        if opt is not None:
            opt.help = HELP_TEXT
        return opt

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:  # the root's own options: worded in Chinese like the rest
            if isinstance(exc, cli_lang.ChineseUsageError) or cli_lang.is_help(exc):
                raise
            raise cli_lang.chinese(exc) from None

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                             list[str]]:
        name = click.utils.make_str(args[0])
        if self.get_command(ctx, name) is None and not ctx.resilient_parsing and not name.startswith("-"):
            known = "、".join(self.list_commands(ctx))
            raise cli_lang.ChineseUsageError(f"没有命令“{name}”；可用的命令：{known}", ctx=ctx)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BranchflowError as exc:
            click.echo(f"错误：{exc.message}", err=True)
            sys.exit(exc.exit_code)
        except DBAPIError:  # most often a database never initialised or not upgraded: say so, no traceback
            _database_not_ready(ctx)
            raise
        except click.UsageError as exc:  # a subcommand's options and arguments, in Chinese (service/cli_lang.py)
            if isinstance(exc, cli_lang.ChineseUsageError) or cli_lang.is_help(exc):
                raise
            raise cli_lang.chinese(exc) from None


def _database_not_ready(ctx: click.Context) -> None:
    """Exit 2 with ``请先运行 branchflow init`` when the database is not at the current schema (else return)."""
    from workflow.migrate import require_current

    root = ctx.find_root().obj
    if root is None:
        return
    try:
        require_current(root.engine)
    except BranchflowError as exc:
        click.echo(f"错误：{exc.message}", err=True)
        sys.exit(exc.exit_code)
    except DBAPIError:
        click.echo("错误：无法读取数据库：请检查 BRANCHFLOW_DATABASE_URL，或先运行 branchflow init", err=True)
        sys.exit(2)


now_option = click.option("--now", "now_s", default=None, help="操作时间（ISO 格式；默认当前时间；无时区按北京时间）")
campaign_option = click.option("--campaign", default=None, help="活动编码（默认最新的活动）")
as_option = click.option("--as", "as_email", required=True, help="操作人邮箱（须已有相应角色）")
json_option = click.option("--json", "as_json", is_flag=True, help="输出 JSON")


@click.group(cls=BranchflowGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """branchflow：基层党组织分类定级、晋位升级工作流程管理。

    数据库默认为 branchflow-data/branchflow.db（SQLite）；设置 BRANCHFLOW_DATABASE_URL 可使用 PostgreSQL。
    """
    try:
        settings = Settings()
    except ValidationError as exc:  # a BRANCHFLOW_ variable that does not parse: name it, no traceback
        bad = "、".join(f"BRANCHFLOW_{str(e['loc'][0]).upper()}" for e in exc.errors() if e.get("loc"))
        raise InvalidInput(f"环境变量设置无效：{bad}（可用的设置见 docs/deploy.md）") from None
    ctx.obj = Ctx(settings)
    ctx.call_on_close(ctx.obj.close)


def _ctx() -> Ctx:
    # The root's object, not find_object(Ctx): under `python -m service.cli` this module is loaded twice
    # (as __main__ and as service.cli), so there are two Ctx classes.
    return click.get_current_context().find_root().obj  # type: ignore[no-any-return]


@cli.command()
def init() -> None:
    """创建或升级数据库（Alembic 迁移）。"""
    from workflow.migrate import current, upgrade

    c = _ctx()
    upgrade(c.engine)
    click.echo(f"数据库已就绪：{c.engine.url.render_as_string(hide_password=True)}（版本 {current(c.engine)}）")


# --- campaigns ------------------------------------------------------------------------------------

@cli.group()
def campaign() -> None:
    """活动（基层组织建设年）：预设、创建、查看。"""


@campaign.command("presets")
def campaign_presets() -> None:
    """列出内置预设。"""
    from workflow.campaign import load_preset, preset_names

    for name in preset_names():
        c = load_preset(name)
        click.echo(f"{name}\t{c.name}\t等级：{' / '.join(b.grade for b in c.grading.scale.bands)}")


@campaign.command("export")
@click.argument("preset")
@click.option("--year", type=int, default=None, help="把预设的日期放到该年")
def campaign_export(preset: str, year: int | None) -> None:
    """输出预设的 TOML 文本（复制后修改，再用 create --file 创建）。"""
    from workflow.campaign import preset_text

    click.echo(preset_text(preset, year=year), nl=False)


@campaign.command("create")
@click.option("--preset", default=None, help="内置预设名（见 campaign presets）")
@click.option("--file", "file_", type=click.Path(dir_okay=False), default=None, help="活动配置 TOML 文件")
@click.option("--year", type=int, default=None, help="与 --preset 或 --from 一起用：活动年份")
@click.option("--from", "from_", default=None, help="从上一年度的活动顺延（同一党委；配置沿用，日期顺延，须复核）")
@click.option("--code", default=None, help="与 --from 一起用：新活动编码（默认把原编码中的年份换成新年份）")
@click.option("--calendar", "calendar_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="与 --from 一起用：含 [calendar] 一节（新年份的 holidays、workdays）的 TOML 文件")
@click.option("--weekdays-only", is_flag=True, help="与 --from 一起用：明确选择新年份仅按周一至周五计算工作日")
@click.option("--as", "as_email", default=None, help="操作人邮箱（记入活动变更记录）")
@click.option("--committee", default=None, help="活动所属党委编码（有多个党委时必须给出）")
@now_option
def campaign_create(preset: str | None, file_: str | None, year: int | None, now_s: str | None,
                    **from_opts: Any) -> None:
    """创建活动，并为每个党支部立案；--from 上一年度活动 --year 年份：顺延并列出须复核的内容。"""
    from workflow.campaigns import create_campaign

    committee = from_opts.pop("committee")  # issue 12: campaigns per committee (--from keeps the old one's)
    if from_opts["from_"]:  # year over year (issue 12): workflow/yearover.py
        from service.cli_years import create_from_command

        return create_from_command(_ctx(), preset=preset, file_=file_, year=year, now=parse_now(now_s), **from_opts)
    if bool(preset) == bool(file_):
        raise InvalidInput("请给出 --preset 或 --file 之一")
    now = parse_now(now_s)
    with _ctx().tx() as s:
        row, opened = create_campaign(s, preset=preset, file=file_, year=year, now=now, committee=committee,
                                      code=from_opts.get("code"))
    click.echo(f"已创建活动 {row.code}（{row.name}），为 {opened} 个党支部立案")


@campaign.command("list")
@json_option
def campaign_list(as_json: bool) -> None:
    """列出活动。"""
    with _ctx().tx() as s:
        rows = views.campaigns(s)
    if as_json:
        return echo_json(rows)
    for r in rows:
        click.echo(f"{r['code']}\t{r['year']}\t{r['committee'] or '（全部党委）'}\t{r['name']}")  # issue 12: whose


@campaign.command("show")
@click.argument("code", required=False)
def campaign_show(code: str | None) -> None:
    """显示活动配置（截止日期、等级、评分标准）。"""
    from workflow.campaign import BRANCH_TYPE_LABELS, SOURCE_LABELS
    from workflow.repository import campaign_of, get_campaign_row
    from workflow.yearover import calendar_in_force

    with _ctx().tx() as s:
        camp_row = get_campaign_row(s, code)
        c = campaign_of(camp_row)
        calendar_line = calendar_in_force(s, camp_row)
    tz = "北京时间" if c.timezone == "Asia/Shanghai" else f"时区 {c.timezone}"
    click.echo(f"{c.code}  {c.name}（{c.year} 年，{tz}）")
    click.echo("截止日期：")
    for st, d in c.deadlines.items():
        click.echo(f"  {Stage(st).label}：{d}")
    click.echo("等级：" + "；".join(f"{b.grade} {b.boundary}" for b in c.grading.scale.bands))
    if c.grading.scale.note:
        click.echo(f"  说明：{c.grading.scale.note}")
    w = c.grading.weights.as_dict()
    click.echo("权重：" + "，".join(f"{SOURCE_LABELS.get(k, k)} {v:g}" for k, v in w.items() if v))
    for r in c.grading.rubrics:
        kinds = "、".join(BRANCH_TYPE_LABELS.get(t, t) for t in r.branch_types)
        click.echo(f"评分标准“{r.name}”（{len(r.items)} 项）" + (f"适用：{kinds}" if kinds else ""))
    quorum = "过半数" if c.sign_off.quorum == "majority" else f"{c.sign_off.quorum} 人"
    click.echo(f"公示期：{c.publicity.window_working_days} 个工作日；签字法定人数：{quorum}")
    click.echo(calendar_line)  # which working-day calendar is in force (issue 12)


@campaign.command("change")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--reason", required=True, help="修改理由（记入审计）")
@as_option
@campaign_option
@now_option
def campaign_change(file: str, reason: str, as_email: str, campaign: str | None, now_s: str | None) -> None:
    """用新的 TOML 配置替换活动配置（审计留痕；已有锁定等级时不能改评分规则）。"""
    from workflow.campaigns import change_campaign

    with _ctx().tx() as s:
        r = change_campaign(s, service.actor_for(s, as_email), _read(file), reason, now=parse_now(now_s),
                            campaign=campaign)
    click.echo(f"活动 {r['campaign']} 已修改：{', '.join(r['sections'])}"
               + (f"；重新计算了 {r['cases_reprojected']} 个支部的截止日期" if r["stages"] else ""))


@campaign.command("extend")
@click.option("--stage", required=True, type=cli_lang.LabelledChoice([s.value for s in Stage if s is not Stage.accepted]),
              help="环节（代码或名称，如 publicity 或 公示）")
@click.option("--until", required=True, help="新的截止日期")
@click.option("--reason", required=True, help="理由（记入审计）")
@as_option
@campaign_option
@now_option
def campaign_extend(stage: str, until: str, reason: str, as_email: str, campaign: str | None, now_s: str | None) -> None:
    """统一延长所有党支部某一环节的截止日期。"""
    from workflow.campaigns import extend_all

    with _ctx().tx() as s:
        r = extend_all(s, service.actor_for(s, as_email), Stage(stage), parse_date(until, "截止日期"), reason,
                       now=parse_now(now_s), campaign=campaign)
    click.echo(f"“{Stage(stage).label}”截止日期已延至 {until}；重新计算了 {r['cases_reprojected']} 个支部的截止日期")


@campaign.command("history")
@campaign_option
@json_option
def campaign_history(campaign: str | None, as_json: bool) -> None:
    """活动配置的变更记录（谁、何时、为何、改了什么）。"""
    from workflow.campaigns import changes

    with _ctx().tx() as s:
        rows = changes(s, campaign)
    if as_json:
        return echo_json(rows)
    for r in rows:
        local = audit.parse_iso(r["at"]).astimezone(DEFAULT_TZ).strftime("%Y-%m-%d %H:%M")
        p = r["payload"]
        detail = p.get("reason", p.get("source", ""))
        if p.get("sections"):
            detail += f"（修改：{', '.join(p['sections'])}）"
        if p.get("deadlines"):
            detail += "；" + "，".join(f"{Stage(k).label}→{v}" for k, v in p["deadlines"].items())
        click.echo(f"#{r['seq']:<3} {local}  {r['actor']:<24} {r['label']}：{detail}")


@campaign.command("stats")
@campaign_option
@json_option
def campaign_stats(campaign: str | None, as_json: bool) -> None:
    """活动进展：各环节、各等级的支部数，晋位升级数和最低等级支部的转化率。"""
    with _ctx().tx() as s:
        st = views.campaign_stats(s, campaign=campaign)
    if as_json:
        return echo_json(st)
    click.echo(f"{st['name']}：党支部 {st['branches']} 个")
    click.echo("各环节：" + "，".join(f"{x['label']} {x['count']}" for x in st["stages"]))
    click.echo("分类定级：" + "，".join(f"{x['label']} {x['count']}" for x in st["grades"]))
    click.echo(f"再次定级 {st['regraded']} 个：晋位 {st['moved_up']} 个，降位 {st['moved_down']} 个")
    rate = f"{st['conversion_rate']:.0%}" if st["conversion_rate"] is not None else "—"
    click.echo(f"{st['lowest_grade']}支部 {st['lowest']} 个，已转化 {st['lowest_moved_up']} 个，转化率 {rate}")


@campaign.command("open-cases")
@campaign_option
@now_option
def campaign_open_cases(campaign: str | None, now_s: str | None) -> None:
    """为尚未立案的党支部立案（导入新支部之后）。"""
    with _ctx().tx() as s:
        n = service.open_missing_cases(s, campaign, now=parse_now(now_s))
    click.echo(f"新立案 {n} 个")


# --- organisation ---------------------------------------------------------------------------------

@cli.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@now_option
def import_(file: str, now_s: str | None) -> None:
    """导入组织（CSV UTF-8 或 XLSX）：党委、党总支、党支部、书记。全部校验通过才导入。"""
    with _ctx().tx() as s:
        r = importer.import_file(s, file)
        from workflow.tenancy import open_latest_cases

        opened = open_latest_cases(s, now=parse_now(now_s))  # each committee's latest campaign (issue 12)
    click.echo(
        f"导入 {r.rows} 行：新增 {r.created}，更新 {r.updated}，未变 {r.unchanged}；"
        f"新党委 {r.committees}，新党总支 {r.general_branches}" + (f"；新立案 {opened}" if opened else "")
    )


@cli.group()
def person() -> None:
    """人员与角色。"""


@person.command("add")
@click.argument("email")
@click.option("--name", required=True, help="姓名")
@click.option("--role", "roles", multiple=True, type=cli_lang.LabelledChoice([r.value for r in Role]),
              help="角色（代码或名称，可多次）")
@click.option("--scope", default="", help="范围：党支部/党总支/党委编码（审计人员：给出党委编码则限该党委及其下级，不给出为全部）")
def person_add(email: str, name: str, roles: tuple[str, ...], scope: str) -> None:
    """添加人员并授予角色，例如：person add a@x.cn --name 张三 --role committee_member --scope 生命学院党委"""
    from workflow.people import add_person

    with _ctx().tx() as s:
        granted = add_person(s, email, name, [Role(r) for r in roles], scope)
    click.echo(f"{name} <{email.lower()}>：" + ("，".join(granted) if granted else "无新增角色"))


@person.command("list")
def person_list() -> None:
    """列出人员及其角色。"""
    from workflow.people import list_people

    with _ctx().tx() as s:
        for p in list_people(s):
            click.echo(f"{p['email']}\t{p['name']}\t" + "，".join(f"{ROLE_LABELS[Role(r)]}({sc})" if sc else ROLE_LABELS[Role(r)] for r, sc in p["roles"]))


# --- branches -------------------------------------------------------------------------------------

@cli.command("list")
@campaign_option
@click.option("--stage", type=cli_lang.LabelledChoice([s.value for s in Stage]), default=None,
              help="环节（代码或名称，如 公示）")
@click.option("--general-branch", default=None, help="党总支编码")
@click.option("--grade", default=None, help="等级（名称或代码，如 较好 或 B）")
@click.option("--overdue", is_flag=True, help="只看逾期的")
@now_option
@json_option
def list_(campaign: str | None, stage: str | None, general_branch: str | None, grade: str | None,
          overdue: bool, now_s: str | None, as_json: bool) -> None:
    """列出党支部及其环节、等级和截止日期。"""
    # Streamed: each row is written as it is read, so memory stays flat in the number of branches.
    with _ctx().tx() as s:
        if grade:
            grade = _grade_code(s, campaign, grade)
        rows = views.iter_cases(s, now=parse_now(now_s), campaign=campaign, stage=stage,
                                general_branch=general_branch, grade=grade, overdue=True if overdue else None)
        if as_json:
            return _echo_json_stream(rows)
        n = 0
        for r in rows:
            flag = " 【逾期】" if r["overdue"] else ""
            click.echo(f"{r['code']}\t{r['name']}\t{r['stage_label']}\t{r['grade_label'] or '-'}\t截止 {r['deadline'] or '-'}{flag}")
            n += 1
    click.echo(f"共 {n} 个")


def _grade_code(s: Session, campaign: str | None, grade: str) -> str:
    """A grade given by its name (较好) or its code (B) as the campaign's code; refuse any other with the list."""
    from workflow.repository import campaign_of, get_campaign_row

    bands = campaign_of(get_campaign_row(s, campaign)).grading.scale.bands
    for b in bands:
        if grade in (b.code, b.grade):
            return b.code
    raise InvalidInput.about("grade", f"本活动没有等级“{grade}”；可用：{'、'.join(b.grade for b in bands)}",
                             key="unknown_grade")


OBJECTION_STATUS = {"open": "待处理", "upheld": "成立", "dismissed": "不成立"}


def _grade_names(s: Session, campaign: str) -> dict[str, str]:
    """The campaign's grade codes → names (先进, 一般 …)."""
    from workflow.repository import campaign_of, get_campaign_row

    return {b.code: b.grade for b in campaign_of(get_campaign_row(s, campaign)).grading.scale.bands}


def _org_names(s: Session, committee: str, general_branch: str | None) -> str:
    """``生命学院党委（CTEST） / 教工党总支（GB1）``: the names with their codes."""
    from sqlalchemy import select

    from workflow.models import Committee, GeneralBranch

    c_name = s.scalar(select(Committee.name).where(Committee.code == committee))
    g_name = s.scalar(select(GeneralBranch.name).where(GeneralBranch.code == general_branch)) if general_branch else None
    first = f"{c_name}（{committee}）" if c_name else committee
    return first + (f" / {g_name}（{general_branch}）" if g_name else f" / {general_branch}" if general_branch else "")


def _echo_json_stream(items: Iterable[Any]) -> None:
    """The same bytes as ``echo_json(list(items))``, written item by item."""
    first = True
    for item in items:
        body = json.dumps(item, ensure_ascii=False, indent=2, default=str).replace("\n", "\n  ")
        click.echo(("[\n  " if first else ",\n  ") + body, nl=False)
        first = False
    click.echo("[]" if first else "\n]")


@cli.command()
@click.argument("branch")
@campaign_option
@now_option
@json_option
def show(branch: str, campaign: str | None, now_s: str | None, as_json: bool) -> None:
    """显示一个党支部：当前环节、截止日期、未满足的条件、等级说明。"""
    with _ctx().tx() as s:
        c = views.show(s, branch, now=parse_now(now_s), campaign=campaign)
        owner = _org_names(s, c["branch"]["committee"], c["branch"]["general_branch"])
        grade_names = _grade_names(s, c["campaign"])
    if as_json:
        return echo_json(c)
    b = c["branch"]
    click.echo(f"{b['name']}（{b['code']}，{b['type_label']}，党员 {b['member_count']} 人，书记 {b['secretary']}）")
    click.echo(f"所属：{owner}；活动 {c['campaign']}；版本 {c['version']}")
    click.echo(f"当前环节：{c['stage_number']}. {c['stage_label']}")
    if c["deadline"]:
        state = f"已逾期 {-c['days_left']} 天" if c["overdue"] else f"还有 {c['days_left']} 天"
        click.echo(f"截止日期：{c['deadline']}（{state}）")
    if c["unmet"]:
        click.echo("离开本环节尚需：")
        for u in c["unmet"]:
            click.echo(f"  - {u['message']}")
        click.echo(f"可推进的角色：{'、'.join(c['who_may_act'])}")
    elif c["stage"] != Stage.accepted.value:
        click.echo(f"本环节条件已满足，可推进（{'、'.join(c['who_may_act'])}）")
    if c["grade_explained"]:
        click.echo("等级：")
        for line in c["grade_explained"]:
            click.echo(f"  {line}")
    if c["adjustment"]:
        a = c["adjustment"]
        click.echo(f"  党委调整为：{grade_names.get(a['grade'], a['grade'])}，理由：{a['reason']}")
    if c["grade"] and c["stage"] == Stage.committee_grading.value:
        click.echo(f"签字：{len(c['signatures'])}/{c['quorum']}（党委委员 {c['committee_size']} 人）")
    if c["final_grade_label"]:
        click.echo(f"定级结果：{c['final_grade_label']}")
    if c["publicity"]:
        click.echo(f"公示：{c['publicity']['start']} 至 {c['publicity']['end']}")
    for o in c["objections"]:
        click.echo(f"  异议 #{o['id']}（{OBJECTION_STATUS.get(o['status'], o['status'])}）：{o['text']}")
    items = c["records"].get("rectification", {}).get("items", [])
    for n, it in enumerate(items, 1):
        click.echo(f"  整改 {n}. {'✓' if it.get('done') else '□'} {it['problem']} → {it['measure']}（{it['due']}，{it['contact']}）")
    if c["regrade_label"]:
        click.echo(f"再次定级：{c['regrade_label']}")


def _act(fn: Callable[..., Any], branch: str, *, as_email: str, now_s: str | None, **kw: Any) -> Any:
    """Run one use case as the person ``as_email`` in one transaction."""
    from service.auth import require_public_or_see, require_see

    now = parse_now(now_s)
    for attempt in (1, 2):
        try:
            with _ctx().tx() as s:
                actor = service.actor_for(s, as_email)
                # as over HTTP: a branch outside the person's scope answers as an unknown one (exit 3),
                # before any stage check; objections are open to all while the grade is published
                (require_public_or_see if fn is service.lodge_objection else require_see)(s, actor, branch)
                return fn(s, branch, actor, now=now, **kw)
        except Conflict as exc:
            # Someone (often the scheduler appending a reminder) wrote to the branch between our read and
            # our write. Unless the caller pinned a version, do it once more on the fresh state: the rules
            # are checked again, so a move that is no longer allowed is refused, not forced. An advance
            # retries only from the stage it first saw: if the branch has left it, the race was lost.
            if attempt == 2 or kw.get("expected_version") is not None:
                raise
            if fn is service.advance and isinstance(exc, service.LostRace):
                kw["from_stage"] = exc.stage
    raise AssertionError("unreachable")


def _done(case: Any, what: str) -> None:
    click.echo(f"{case.branch.name}（{case.branch.code}）：{what}。当前环节：{case.stage.label}，版本 {case.version}")


@cli.command()
@click.argument("branch")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@as_option
@campaign_option
@now_option
@click.option("--expect-version", type=int, default=None, help="乐观锁：仅当版本仍为此值时才写入")
@click.option("--attach", multiple=True, metavar="FILE", help="附件（可多次给出）：PDF、图片、Word、Excel，每个最多 20 MB")
def record(branch: str, file: str, as_email: str, campaign: str | None, now_s: str | None,
           expect_version: int | None, attach: tuple[str, ...] = ()) -> None:
    """填报当前环节的数据（JSON 文件，- 表示标准输入）。"""
    raw = sys.stdin.read() if file == "-" else _read(file)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise from_json_error(exc, "标准输入" if file == "-" else f"文件 {file} ") from None
    except ValueError:  # not UTF-8 text at all
        raise InvalidInput(f"{file} 不是有效的 JSON 文本") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{file} 应为一个 JSON 对象")
    from service.cli_files import with_files  # --attach (issue 16)

    fn, extra = with_files(service.record, attach, _ctx().settings)
    case = _act(fn, branch, data=data, as_email=as_email, campaign=campaign, now_s=now_s,
                expected_version=expect_version, **extra)
    _done(case, "已填报")


def _read(file: str) -> str:
    try:
        return Path(file).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInput(f"找不到文件 {file}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{file} 不是 UTF-8 编码：请另存为 UTF-8 后再试") from None
    except OSError as exc:
        raise InvalidInput(f"无法读取 {file}：{exc.strerror}") from None


@cli.command("grade")
@click.argument("branch")
@as_option
@campaign_option
@now_option
def grade_(branch: str, as_email: str, campaign: str | None, now_s: str | None) -> None:
    """计算得分和等级（党委评定环节）。"""
    case = _act(service.compute_grade, branch, as_email=as_email, campaign=campaign, now_s=now_s)
    g = case.state["grade"]
    _done(case, f"总分 {g['total']:g}，等级 {g['grade_label']}")


@cli.command()
@click.argument("branch")
@click.option("--grade", "grade", required=True, help="调整后的等级（代码或名称）")
@click.option("--reason", required=True, help="书面理由")
@as_option
@campaign_option
@now_option
def adjust(branch: str, grade: str, reason: str, as_email: str, campaign: str | None, now_s: str | None) -> None:
    """党委调整等级（须写明理由；已签字作废，需重新签字）。"""
    case = _act(service.adjust_grade, branch, grade=grade, reason=reason, as_email=as_email, campaign=campaign, now_s=now_s)
    _done(case, f"等级调整为 {case.campaign.grading.scale.by_code(case.state['adjustment']['grade']).grade}")


@cli.command()
@click.argument("branch")
@as_option
@campaign_option
@now_option
def sign(branch: str, as_email: str, campaign: str | None, now_s: str | None) -> None:
    """党委委员签字确认等级。"""
    case = _act(service.sign, branch, as_email=as_email, campaign=campaign, now_s=now_s)
    quorum = case.campaign.quorum_for(case.facts.committee_size)
    _done(case, f"已签字（{len(case.state['signatures'])}/{quorum}）")


@cli.command()
@click.argument("branch")
@click.option("--start", default=None, help="公示开始日期（默认今天；遇节假日顺延）")
@as_option
@campaign_option
@now_option
def publish(branch: str, start: str | None, as_email: str, campaign: str | None, now_s: str | None) -> None:
    """发布公示（公示期按工作日计算）。"""
    case = _act(service.publish, branch, start=parse_date(start, "开始日期") if start else None,
                as_email=as_email, campaign=campaign, now_s=now_s)
    p = case.state["publicity"]
    _done(case, f"公示 {p['start']} 至 {p['end']}")


@cli.command("object")
@click.argument("branch")
@click.option("--text", required=True, help="异议内容")
@as_option
@campaign_option
@now_option
def object_(branch: str, text: str, as_email: str, campaign: str | None, now_s: str | None) -> None:
    """对公示结果提出异议。"""
    case = _act(service.lodge_objection, branch, text=text, as_email=as_email, campaign=campaign, now_s=now_s)
    _done(case, f"已登记异议 #{case.state['objections'][-1]['id']}")


@cli.command()
@click.argument("branch")
@click.argument("objection_id", type=int)
@click.option("--upheld/--dismissed", required=True, help="异议成立（退回党委评定）或不成立")
@click.option("--reason", required=True, help="处理理由")
@as_option
@campaign_option
@now_option
def resolve(branch: str, objection_id: int, upheld: bool, reason: str, as_email: str, campaign: str | None,
            now_s: str | None) -> None:
    """处理异议。"""
    case = _act(service.resolve_objection, branch, objection_id=objection_id, upheld=upheld, reason=reason,
                as_email=as_email, campaign=campaign, now_s=now_s)
    _done(case, "异议成立，已退回党委评定" if upheld else "异议不成立，已记录")


@cli.command()
@click.argument("branch")
@click.argument("item", type=int)
@click.option("--evidence", required=True, help="完成情况与佐证")
@as_option
@campaign_option
@now_option
@click.option("--attach", multiple=True, metavar="FILE", help="附件（可多次给出）：PDF、图片、Word、Excel，每个最多 20 MB")
def complete(branch: str, item: int, evidence: str, as_email: str, campaign: str | None, now_s: str | None,
             attach: tuple[str, ...] = ()) -> None:
    """登记整改事项完成（第 ITEM 项）。"""
    from service.cli_files import with_files  # --attach (issue 16)

    fn, extra = with_files(service.complete_item, attach, _ctx().settings)
    case = _act(fn, branch, item=item, evidence=evidence, as_email=as_email, campaign=campaign,
                now_s=now_s, **extra)
    _done(case, f"第 {item} 项已完成")


@cli.command()
@click.argument("branch")
@as_option
@campaign_option
@now_option
@click.option("--expect-version", type=int, default=None, help="乐观锁：仅当版本仍为此值时才推进")
def advance(branch: str, as_email: str, campaign: str | None, now_s: str | None, expect_version: int | None) -> None:
    """推进到下一环节（须满足本环节的全部条件）。"""
    case = _act(service.advance, branch, as_email=as_email, campaign=campaign, now_s=now_s,
                expected_version=expect_version)
    _done(case, "已推进")


@cli.command()
@click.argument("branch")
@click.option("--until", required=True, help="新的截止日期")
@click.option("--reason", required=True, help="理由")
@click.option("--stage", type=cli_lang.LabelledChoice([s.value for s in Stage if s is not Stage.accepted]), default=None,
              help="环节（代码或名称）")
@as_option
@campaign_option
@now_option
def extend(branch: str, until: str, reason: str, stage: str | None, as_email: str, campaign: str | None,
           now_s: str | None) -> None:
    """延长一个党支部某环节的截止日期（组织部）。"""
    case = _act(service.extend_deadline, branch, deadline=parse_date(until, "截止日期"), reason=reason,
                stage=Stage(stage) if stage else None, as_email=as_email, campaign=campaign, now_s=now_s)
    _done(case, f"截止日期延至 {until}")


# --- history and audit ----------------------------------------------------------------------------

@cli.command()
@click.argument("branch")
@campaign_option
@click.option("--at", "at_s", default=None, help="重放到该时间为止的状态")
@json_option
def history(branch: str, campaign: str | None, at_s: str | None, as_json: bool) -> None:
    """显示党支部的全部记录；--at 重放到某一时间的状态。"""
    at = parse_now(at_s) if at_s else None
    with _ctx().tx() as s:
        h = views.history(s, branch, campaign=campaign, at=at)
    if as_json:
        return echo_json(h)
    title = f"{h['branch']['name']}（{h['branch']['code']}）在活动 {h['campaign']} 中的记录"
    click.echo(title + (f"，截至 {at_s}" if at_s else ""))
    for e in h["events"]:
        local = audit.parse_iso(e["at"]).astimezone(DEFAULT_TZ).strftime("%Y-%m-%d %H:%M")
        click.echo(f"#{e['seq']:<3} {local}  {e['actor_name']:<12} [{Stage(e['stage']).label}] {e['label']}：{e['description']}")
    st = h["state"]
    click.echo(f"{'当时' if at_s else '当前'}环节：{h['stage_label']}" + (f"；定级结果：{h['final_grade_label']}" if st.get("final_grade") else ""))


# `audit …` lives in service/cli_audit.py (issue 11)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="监听地址")
@click.option("--port", default=8000, type=int, show_default=True, help="端口")
@click.option("--no-web", is_flag=True, help="只运行定时任务（提醒、督促、发信），不提供网页和 API")
@click.option("--sweep-seconds", default=300, type=int, show_default=True, help="扫描到期提醒的间隔")
@click.option("--dispatch-seconds", default=60, type=int, show_default=True, help="发信的间隔")
def serve(host: str, port: int, no_web: bool, sweep_seconds: int, dispatch_seconds: int) -> None:
    """运行服务：网页、HTTP API 和定时任务（APScheduler：到期提醒、逾期督促、发信），直到 Ctrl-C。

    多个节点共用 PostgreSQL 时，只有持有咨询锁的一个节点扫描提醒；每个节点都发信（按行加锁领取）。
    """
    import logging
    import signal
    import time

    from scheduler.jobs import build_scheduler
    from workflow.migrate import require_current

    def _stop(*_: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops as Ctrl-C does: the finally below still runs

    from service.logs import configure as configure_logging

    c = _ctx()
    configure_logging(c.settings)  # one line per event on stderr (BRANCHFLOW_LOG_FORMAT, BRANCHFLOW_LOG_LEVEL)
    require_current(c.engine)
    signal.signal(signal.SIGTERM, _stop)
    sched = build_scheduler(c.engine, c.settings, sweep_seconds=sweep_seconds, dispatch_seconds=dispatch_seconds)
    sched.start()
    click.echo(f"定时任务已启动：每 {sweep_seconds} 秒扫描提醒，每 {dispatch_seconds} 秒发信")
    from service.cli_years import calendar_lines

    with c.tx() as s:  # which working-day calendar each campaign runs on (issue 12), on stdout and in the log
        for line in calendar_lines(s):
            click.echo(line)
            logging.getLogger("branchflow.scheduler").info(line)
    try:
        if no_web:
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        else:
            import uvicorn

            from service.app import create_app
            from service.logs import uvicorn_options

            app = create_app(c.settings, engine=c.engine)
            app.state.branchflow_scheduler = sched  # /readyz reports this node's role
            click.echo(f"branchflow 网页：http://{host}:{port}/  API 文档：http://{host}:{port}/api/docs")
            try:
                # uvicorn handles SIGINT/SIGTERM itself (graceful shutdown), then re-raises SIGINT
                uvicorn.run(app, host=host, port=port, lifespan="off", **uvicorn_options(c.settings))
            except KeyboardInterrupt:
                pass
    finally:
        sched.shutdown(wait=True)
        sched.branchflow_lock.release()
        click.echo("已停止")


@cli.command()
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="演示数据目录（默认 branchflow-data/demo）")
@click.option("--year", type=int, default=None, help="活动年份（默认今年）")
@click.option("--branches", "n_branches", type=int, default=36, help="西安海棠职业学院的党支部数量（另两所院校各 8 个）")
@click.option("--seed", type=int, default=2026, help="随机种子")
@click.option("--until", "until_s", default=None, help="模拟到该日为止（默认 9 月 15 日，全年）；如 2026-04-22 停在公示期")
def demo(data_dir: str | None, year: int | None, n_branches: int, seed: int, until_s: str | None) -> None:
    """演示：新建 SQLite 数据库，三所院校（海棠、河南某学院、中国矿业大学（北京））在同一上级党委下各按本校预设模拟一年（或到 --until 为止），
    年末河南某学院由本年活动顺延开启下一年度，最后输出各校汇总和上级党委汇总。"""
    from workflow.demo import run_demo

    settings = _ctx().settings
    target = Path(data_dir) if data_dir else settings.data_dir / "demo"
    until = parse_date(until_s, "--until") if until_s else None
    y = year or (until.year if until else dt.date.today().year)
    if until and until.year != y:
        raise InvalidInput(f"--until {until} 不在活动年份 {y} 内")
    run_demo(target, year=y, n_branches=n_branches, seed=seed, until=until, echo=click.echo)


# Commands of the other capabilities live in their own modules, each with ``register(cli)``.
EXTENSIONS: tuple[str, ...] = ("service.cli_notify", "service.cli_reports", "service.cli_web")
EXTENSIONS += ("service.cli_ballot",)  # online ballots (issue 15)
EXTENSIONS += ("service.cli_audit",)  # Merkle log, checkpoints, proofs (issue 11)
EXTENSIONS += ("service.cli_ops",)  # status, backup, restore (issue 9)
EXTENSIONS += ("service.cli_security",)  # lockouts, sessions, API tokens, log-in record (issue 14)
EXTENSIONS += ("service.cli_years",)  # year over year: grades, branch lineage (issue 12)
EXTENSIONS += ("service.cli_tenancy",)  # committees in a tree, the parent's roll-up (issue 12)


def _register_extensions() -> None:
    import importlib

    for name in EXTENSIONS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        mod.register(cli)


_register_extensions()


def main() -> None:
    cli(prog_name="branchflow")


if __name__ == "__main__":
    main()

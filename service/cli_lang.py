"""The `branchflow` command in Chinese: click's own words (help headings, usage errors, type errors).

click marks every sentence it prints with gettext (``_("Missing option")``, ``_("Usage:")`` …); ``install()``
gives those calls a Chinese catalogue keyed by click's message ids (the same thing a ``.mo`` file would do,
without touching the process's locale or any other library). On top of that the usage errors people meet
most are worded from the error's class and parameter (:func:`usage_message`): the option's name and its
help text, the choices with their Chinese labels; the whole error is printed as one ``错误：…`` line and a
hint, never click's English usage line.

    install()                  the catalogue, once per process (idempotent)
    usage_message(exc)         a click UsageError in Chinese, from its class and parameter
    ARG_LABELS                 positional arguments' Chinese names (shown in usage lines and errors)
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import click

from states.base import ROLE_LABELS, STAGE_LABELS

# click's message ids (click 8.x) → Chinese. Placeholders keep their names; ``!r`` is dropped in favour of
# Chinese quotation marks.
CATALOGUE: dict[str, str] = {
    "Usage:": "用法：",
    "Options": "选项",
    "Commands": "命令",
    "Positional arguments": "参数",
    "Show this message and exit.": "显示此帮助并退出",
    "Show the version and exit.": "显示版本并退出",
    "%(prog)s, version %(version)s": "%(prog)s，版本 %(version)s",
    "Error: {message}": "错误：{message}",
    "Try '{command} {option}' for help.": "运行“{command} {option}”查看用法。",
    "Aborted!": "已中止。",
    "Missing command.": "缺少子命令。",
    "Missing argument": "缺少参数",
    "Missing option": "缺少选项",
    "Missing parameter": "缺少参数",
    "Missing {param_type}": "缺少{param_type}",
    "Missing parameter: {param_name}": "缺少参数：{param_name}",
    "No such option {name!r}.": "没有选项“{name}”。",
    "No such command {name!r}.": "没有命令“{name}”。",
    "Invalid value for {param_hint}: {message}": "{param_hint} 的值无效：{message}",
    "Invalid value: {message}": "值无效：{message}",
    "Got unexpected extra argument ({args})": "多余的参数：{args}",
    "Got unexpected extra arguments ({args})": "多余的参数：{args}",
    "Option {name!r} requires an argument.": "选项“{name}”后须给出一个值。",
    "Option {name!r} requires {nargs} arguments.": "选项“{name}”后须给出 {nargs} 个值。",
    "Option {name!r} does not take a value.": "选项“{name}”不接受值。",
    "Argument {name!r} takes {nargs} values.": "参数“{name}”须给出 {nargs} 个值。",
    "Did you mean {possibility}?": "您是不是要用 {possibility}？",
    "(Did you mean one of: {possibilities}?)": "（您是不是要用以下之一：{possibilities}？）",
    "Invalid start character for option ({option})": "选项的开头字符无效（{option}）",
    "{value!r} is not a valid {number_type}.": "“{value}”不是有效的{number_type}。",
    "{value} is not in the range {range}.": "{value} 不在允许的范围 {range} 内。",
    "{value!r} is not {choice}.": "“{value}”不是可选值，只能是 {choice}。",
    "{value!r} is not one of {choices}.": "“{value}”不是可选值；可选：{choices}。",
    "Choose from:\n\t{choices}": "可选：\n\t{choices}",
    "{value!r} does not match the format {format}.": "“{value}”不符合格式 {format}。",
    "{value!r} does not match the formats {formats}.": "“{value}”不符合以下任一格式：{formats}。",
    "{value!r} is not a valid boolean. Recognized values: {states}": "“{value}”不是有效的是/否值；可用：{states}",
    "{value!r} is not a valid UUID.": "“{value}”不是有效的 UUID。",
    "{name} {filename!r} does not exist.": "{name}“{filename}”不存在。",
    "{name} {filename!r} is a file.": "“{filename}”是文件，须为目录。",
    "{name} {filename!r} is a directory.": "“{filename}”是目录，须为文件。",
    "{name} {filename!r} is not readable.": "{name}“{filename}”不可读。",
    "{name} {filename!r} is not writable.": "{name}“{filename}”不可写。",
    "{name} {filename!r} is not executable.": "{name}“{filename}”不可执行。",
    "Could not open file {filename!r}: {message}": "无法打开文件“{filename}”：{message}",
    "file": "文件",
    "directory": "目录",
    "path": "路径",
    "Value must be an iterable.": "值须为列表。",
    "Takes {nargs} values but 1 was given.": "须给出 {nargs} 个值，只给了 1 个。",
    "Takes {nargs} values but {len} were given.": "须给出 {nargs} 个值，给了 {len} 个。",
    "default: {default}": "默认：{default}",
    "env var: {var}": "环境变量：{var}",
    "(dynamic)": "（动态）",
    "deprecated": "已弃用",
    "Do you want to continue?": "是否继续？",
    "Confirm the action without prompting.": "不经确认直接执行",
    "Repeat for confirmation": "请再输入一次以确认",
    "Error: The two entered values do not match.": "错误：两次输入不一致。",
    "Error: invalid input": "错误：输入无效",
    "Press any key to continue...": "按任意键继续……",
    "unknown error": "未知错误",
}
# Type names click puts into messages and metavars ("'x' is not a valid integer", "--year INTEGER").
TYPE_NAMES: dict[type[click.ParamType[Any]], str] = {
    click.types.IntParamType: "整数", click.types.IntRange: "整数", click.types.FloatParamType: "数字",
    click.types.FloatRange: "数字", click.types.StringParamType: "文字", click.types.BoolParamType: "是/否",
    click.types.DateTime: "时间", click.types.UUIDParameterType: "UUID",
}
ARG_LABELS: dict[str, str] = {
    "branch": "党支部编码", "code": "编码", "codes": "编码", "email": "电子邮箱", "file": "文件", "item": "整改事项编号",
    "name": "名称", "preset": "预设名", "ballot_id": "测评编号", "objection_id": "异议编号", "seq": "序号",
    "token_id": "令牌编号",
}
# Values of choices shown with their Chinese names ("survey（调查摸底）").
VALUE_LABELS: dict[str, str] = {
    **{s.value: s.label for s in STAGE_LABELS}, **{r.value: r.label for r in ROLE_LABELS},
    # mail statuses (notifications/models.py), export formats
    "pending": "待发送", "held": "暂扣", "sent": "已发送", "dead": "投递失败", "cancelled": "已取消", "skipped": "已跳过",
    "queued": "排队中", "json": "JSON", "csv": "CSV", "xlsx": "XLSX", "html": "网页",
}

_installed = False
_REQUIRED = re.compile(r"\[[^\]]*\brequired\]")


def _gettext(message: str) -> str:
    return CATALOGUE.get(message, message)


def _ngettext(singular: str, plural: str, n: int) -> str:
    return _gettext(singular if n == 1 else plural)


def install() -> None:
    """Give click's gettext calls the Chinese catalogue and its types Chinese names (idempotent)."""
    global _installed
    if _installed:
        return
    for name in ("core", "exceptions", "parser", "types", "decorators", "formatting", "termui", "utils"):
        mod = sys.modules.get(f"click.{name}") or __import__(f"click.{name}", fromlist=["_"])
        if hasattr(mod, "_"):
            setattr(mod, "_", _gettext)  # noqa: B010 (a module's global, by name)
        if hasattr(mod, "ngettext"):
            setattr(mod, "ngettext", _ngettext)  # noqa: B010
    for cls, label in TYPE_NAMES.items():
        cls.name = label
    _installed = True


def label_arguments(command: click.Command) -> None:
    """Positional arguments get Chinese metavars (``党支部编码`` rather than ``BRANCH``) unless they have one."""
    for p in command.params:
        if isinstance(p, click.Argument) and p.metavar is None and p.name in ARG_LABELS:
            p.metavar = ARG_LABELS[p.name] + ("…" if p.nargs == -1 else "")


def _hint(param: click.Parameter) -> str:
    if isinstance(param, click.Option):
        return " / ".join(f"“{o}”" for o in param.opts)
    return f"“{ARG_LABELS.get(param.name or '', param.human_readable_name)}”"


def _choices(values: Sequence[Any]) -> str:
    return "、".join(f"{v}（{VALUE_LABELS[str(v)]}）" if str(v) in VALUE_LABELS else str(v) for v in values)


def usage_message(exc: click.UsageError) -> str:
    """A usage error in Chinese from its class and parameter (click's sentence, via the catalogue, otherwise)."""
    param = getattr(exc, "param", None)
    if isinstance(exc, click.MissingParameter) and param is not None:
        kind = "选项" if isinstance(param, click.Option) else "参数"
        help_text = getattr(param, "help", None)
        return f"缺少{kind}{_hint(param)}" + (f"（{help_text}）" if help_text else "")
    if isinstance(exc, click.NoSuchOption):
        more = ""
        if exc.possibilities:
            more = "；您是不是要用：" + "、".join(sorted(exc.possibilities))
        return f"没有选项“{exc.option_name}”{more}"
    if isinstance(exc, click.BadParameter) and param is not None:
        if isinstance(param.type, click.Choice):
            return f"{_hint(param)} 的值无效；可选：{_choices(list(param.type.choices))}"
        return f"{_hint(param)} 的值无效：{exc.message}"
    return exc.format_message()


class ChineseFormatter(click.HelpFormatter):
    """Help text with Chinese punctuation: ``用法：branchflow [选项] …``, ``选项：``."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, args, prefix="用法：" if prefix is None else prefix)

    def write_dl(self, rows: Iterable[tuple[str, str]], col_max: int = 30, col_spacing: int = 2) -> None:
        # click adds "[required]" without gettext (Option.get_help_extra): the one word it leaves English
        super().write_dl([(t, _REQUIRED.sub(lambda m: m.group(0).replace("required", "必填"), h)) for t, h in rows],
                         col_max, col_spacing)

    def write_heading(self, heading: str) -> None:
        self.write(f"{'':>{self.current_indent}}{heading}：\n")


class ChineseContext(click.Context):
    """The context of every branchflow command: Chinese help formatting."""

    formatter_class = ChineseFormatter


class ChineseUsageError(click.UsageError):
    """A usage error worded in Chinese: ``错误：…`` and where to read the usage, no English usage line."""

    def show(self, file: Any = None) -> None:
        hint = ""
        if self.ctx is not None:
            hint = f"\n运行“{self.ctx.command_path} --help”查看用法。"
        click.echo(f"错误：{self.message}{hint}", err=True)


def is_help(exc: click.UsageError) -> bool:
    """``branchflow campaign`` without a subcommand shows the help (click's NoArgsIsHelpError): not an error."""
    return type(exc).__name__ == "NoArgsIsHelpError"


def chinese(exc: click.UsageError) -> ChineseUsageError:
    """The same usage error (its context and exit code 2), worded by :func:`usage_message`."""
    return ChineseUsageError(usage_message(exc), ctx=exc.ctx)


class LabelledChoice(click.Choice[str]):
    """A choice of values that also takes their Chinese names: ``--stage 公示`` is ``--stage publicity``."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if isinstance(value, str) and value not in self.choices:
            value = next((str(v) for v in self.choices if VALUE_LABELS.get(str(v)) == value), value)
        return str(super().convert(value, param, ctx))

    def get_metavar(self, param: click.Parameter, ctx: click.Context) -> str | None:
        return "[" + "|".join(f"{v}（{VALUE_LABELS[str(v)]}）" if str(v) in VALUE_LABELS else str(v)
                              for v in self.choices) + "]"

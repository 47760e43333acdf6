"""The error sweep (issue 16): the bad inputs the suite uses in its refusal tests, sent to every edge — the
CLI (in-process through click, plus one real subprocess), the API (the app over HTTP) and the pages — and
every word a person reads checked: no Latin-letter word unless it is a code or a word the person typed,
an option name, a proper noun or an allowed term (CSV, JSON, API …), an e-mail address, a path or a URL.
Also: each error carries its fields (API ``problems``, the page marks the field, the CLI prints one per
line), and `list --grade` takes the grade's name."""

from __future__ import annotations

import html as html_lib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from states.base import Stage
from tests.acceptance.conftest import PEOPLE, Site
from tests.support.world import ORG, at
from workflow import service

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"CSV", "XLSX", "PDF", "JSON", "TOML", "API", "URL", "SMTP", "ID", "UUID", "UTF", "BOM", "ISO",
           "SQLite", "PostgreSQL", "branchflow", "true", "false", "null", "Bearer", "Authorization", "POST",
           "GET", "Alembic", "SVG", "HTML", "QR", "Ctrl", "MB", "KB", "PNG", "JPEG", "JPG", "GIF", "WebP", "docx", "doc",
           "xlsx", "xls", "pdf", "csv", "chinesecalendar"}  # file types are their names
# What is not a word for people: addresses, URLs and paths, option names, dates and times, codes with digits.
NOT_WORDS = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|https?://\S+|(?<![\w])/[\w/{}<>.:-]*|(?<![\w-])--?[A-Za-z][\w-]*"
                       r"|\d{4}-\d\d-\d\d(?:T[\d:.]+(?:[+-]\d\d:?\d\d|Z)?)?|\b[\w.-]*\d[\w.-]*\b"
                       r"|\b[A-Za-z_]+(?=（)")  # a value shown with its Chinese name: survey（调查摸底）
WORD = re.compile(r"[A-Za-z]{2,}")


def latin_words(text: str, typed: str = "") -> list[str]:
    """The Latin-letter words of ``text`` a person should not meet (``typed``: what the person entered)."""
    mine = set(WORD.findall(NOT_WORDS.sub(" ", typed)))
    return [w for w in WORD.findall(NOT_WORDS.sub(" ", text)) if w not in ALLOWED and w not in mine]


def visible(html: str) -> str:
    """The page's text as a person reads it (no scripts, styles, tags or attributes)."""
    html = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", html)
    return html_lib.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert m, "the page has no CSRF token"
    return m.group(1)


def _stage_the_world(site: Site) -> None:
    """B1 in self-assessment, B2 in rectification, B3 in acceptance, B4 in publicity; the clock in September."""
    w = site.world
    w.drive("B1", Stage.self_assessment)
    w.drive("B2", Stage.rectification)
    w.drive("B3", Stage.acceptance)
    w.drive("B4", Stage.publicity)
    w.do(service.publish, "B4", ORG, now=at(9, 9, 9))  # in its window: objections may be lodged
    site.clock.now = at(9, 10, 9)


SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

# --- the API -----------------------------------------------------------------------------------------

PLAN_BAD = {"items": [{"problem": "组织生活不规范", "measure": "每月主题党日", "due": "2026-07-31", "contact": "委员1"},
                      {"problem": "问题", "measure": "x", "due": "2026-13-01", "contact": ""}]}
API_CASES: list[tuple[str, str, str, Any]] = [
    ("sec1", "POST", "/api/branches/B1/records", {"data": {"scores": {"3": 40}}}),
    ("sec1", "POST", "/api/branches/B1/records", {"data": {"attendance": "many", "meeting_date": "yesterday"}}),
    ("sec1", "POST", "/api/branches/B1/records", {"data": {"nope": 1}}),
    ("sec1", "POST", "/api/branches/B1/records", '{"data": {}, "expected_version": 1e400}'),
    ("sec1", "POST", "/api/branches/B1/records", "this is not valid"),
    ("sec1", "POST", "/api/branches/B1/records", {"dta": {}}),
    ("sec1", "POST", "/api/branches/B1/advance", {}),
    ("sec1", "POST", "/api/branches/B2/advance", {}),
    ("sec2", "POST", "/api/branches/B2/records", {"data": PLAN_BAD}),
    ("sec2", "POST", "/api/branches/B2/advance", {}),
    ("sec2", "POST", "/api/branches/B2/items/1/complete", {"evidence": "x"}),
    ("gb2", "POST", "/api/branches/B3/records", {"data": {"passed": False, "summary": "整改不到位，限期再改",
                                                          "inspected_on": "2026-09-01"}}),
    ("gb2", "POST", "/api/branches/B3/records", {"data": {"passed": True, "summary": "好", "inspected_on": "2026-09-01"}}),
    ("gb2", "POST", "/api/branches/B3/records", {"data": {"passed": "maybe", "summary": "整改到位，验收通过。",
                                                          "inspected_on": "2026-09-01", "regrade_score": 101}}),
    ("sec1", "POST", "/api/branches/B4/objections", {"text": "a"}),
    ("org", "POST", "/api/branches/B4/objections/99/resolve", {"upheld": True, "reason": "x"}),
    ("org", "POST", "/api/branches/B1/extend", {"deadline": "2030-01-01", "reason": "延期"}),
    ("org", "POST", "/api/branches/B1/extend", {"deadline": "soon", "reason": ""}),
    ("org", "POST", "/api/branches/B1/adjust", {"grade": "最好", "reason": "理由充分的说明"}),
    ("org", "GET", "/api/branches?stage=bad&limit=0", None),
    ("org", "GET", "/api/branches/NOPE", None),
    ("org", "GET", "/api/branches/B1/history?at=yesterday", None),
    (None, "GET", "/api/branches", None),
    (None, "POST", "/api/token", {"email": "", "password": ""}),
]


def _people_words(body: Any) -> str:
    """Every string of an error body a person reads: messages, problems, unmet criteria, detail messages."""
    if not isinstance(body, dict):
        return ""
    out = [str(body.get("message", ""))]
    out += [str(p.get("message", "")) for p in body.get("problems") or []]
    out += [str(u.get("message", "")) for u in body.get("unmet") or []]
    out += [str(d.get("msg", "")) for d in body.get("detail") or [] if isinstance(d, dict)]
    out += [str(r) for r in body.get("allowed_roles") or []]
    return "\n".join(out)


@SQLITE
def test_every_api_refusal_speaks_chinese_and_names_its_fields(site: Site) -> None:
    _stage_the_world(site)
    bad: list[str] = []
    for who, method, path, body in API_CASES:
        kw: dict[str, Any] = ({"content": body, "headers": {"Content-Type": "application/json"}}
                              if isinstance(body, str) else {"json": body} if body is not None else {})
        if isinstance(body, str):
            kw["headers"].update(site.headers(who))
            r = site.client.request(method, path, **kw)
        else:
            r = site.call(who, method, path, **kw)
        assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)
        words = _people_words(r.json())
        assert words.strip(), (path, r.text)
        if found := latin_words(words, typed=json.dumps(body, ensure_ascii=False) + path):
            bad.append(f"{method} {path} {body!r} → {found}: {words}")
    assert not bad, "\n".join(bad)

    # the fields, counted from 1, in the JSON
    r = site.call("sec2", "POST", "/api/branches/B2/records", json={"data": PLAN_BAD})
    problems = r.json()["problems"]
    assert {(p["field"], p["item"]) for p in problems} >= {("items[2].measure", 2), ("items[2].due", 2),
                                                          ("items[2].contact", 2)}
    assert "第 2 项整改事项的“主要整改措施”：至少 2 个字符" in [p["message"] for p in problems]
    r = site.call("sec1", "POST", "/api/branches/B1/records", json={"data": {"scores": {"3": 40}}})
    assert [(p["field"], p["key"]) for p in r.json()["problems"]] == [("scores.3", "out_of_range")]


@SQLITE
def test_a_failed_inspection_is_recorded_without_a_regrade_score(site: Site) -> None:
    _stage_the_world(site)
    r = site.call("gb2", "POST", "/api/branches/B3/records", json={"data": {
        "passed": False, "summary": "整改不到位，限期再改", "inspected_on": "2026-09-01", "new_deadline": "2026-10-15"}})
    assert r.status_code == 200, r.text
    assert site.world.stage("B3") is Stage.rectification
    history = site.call("gb2", "GET", "/api/branches/B3/history").json()
    assert any(e["kind"] == "inspected" and "验收未通过" in e["description"] for e in history["events"])


# --- the pages ---------------------------------------------------------------------------------------

def _post(site: Site, who: str, code: str, form: dict[str, str]) -> Any:
    c = site.page_client(who)
    page = c.get(form.get("back") or f"/branches/{code}").text
    data = {"csrf": csrf_of(page), "version": str(site.version(code)), **form}
    return c.post(f"/branches/{code}", data=data, follow_redirects=False)


SCORES_OK = {f"s_{i}": "4" for i in range(1, 19)}
PAGE_CASES: list[tuple[str, str, dict[str, str], set[str]]] = [
    ("sec1", "B1", {"action": "record", **SCORES_OK, "s_3": "40", "attendance": "6", "meeting_date": "2026-04-01"},
     {"s_3"}),
    ("sec1", "B1", {"action": "record", **SCORES_OK, "s_5": "abc", "attendance": "6"}, {"s_5"}),
    ("sec1", "B1", {"action": "record", "attendance": "many"}, {"attendance"}),
    ("sec1", "B1", {"action": "record_advance", **SCORES_OK, "attendance": "2", "meeting_date": "2026-04-01"},
     {"attendance"}),
    ("sec2", "B2", {"action": "record", "problem_1": "组织生活不规范", "measure_1": "每月主题党日", "due_1": "2026-07-31",
                    "contact_1": "委员1", "problem_2": "问题", "measure_2": "x", "due_2": "2026-07-31",
                    "contact_2": "委员2"}, {"measure_2"}),
    ("sec2", "B2", {"action": "complete", "item": "1", "evidence": "x"}, set()),
    ("gb2", "B3", {"action": "record", "passed": "no", "summary": "整改不到位", "inspected_on": "2026-09-01"},
     {"new_deadline"}),
    ("gb2", "B3", {"action": "record", "passed": "yes", "summary": "整改到位，验收通过。", "inspected_on": "2026-09-01"},
     {"regrade_score"}),
    ("gb2", "B3", {"action": "record", "passed": "yes", "summary": "好", "inspected_on": "2026-09-01",
                   "regrade_score": "91"}, {"summary"}),
    ("sec1", "B4", {"action": "object", "text": "a", "back": "/publicity"}, {"text"}),
    ("org", "B1", {"action": "extend", "deadline": "soon", "reason": "延期"}, set()),
    ("org", "B1", {"action": "nosuch"}, set()),
]


@SQLITE
def test_every_page_refusal_speaks_chinese_and_marks_its_fields(site: Site) -> None:
    _stage_the_world(site)
    bad: list[str] = []
    for who, code, form, fields in PAGE_CASES:
        r = _post(site, who, code, form)
        assert 400 <= r.status_code < 500, (form, r.status_code, r.headers.get("location"))
        shown = visible(r.text)
        if found := latin_words(shown, typed=" ".join(form.values()) + " " + PEOPLE.get(who, who)):
            bad.append(f"{code} {form.get('action')} → {found}")
        for name in fields:
            m = re.search(rf'<(?:input|textarea)[^>]*\bname="{re.escape(name)}"[^>]*>', r.text)
            assert m and 'class="invalid"' in m.group(0), (form, name, m and m.group(0))
    assert not bad, "\n".join(bad)


# --- the CLI -----------------------------------------------------------------------------------------

def _cli_cases(tmp: Path) -> list[list[str]]:
    bad_json = tmp / "bad.json"
    bad_json.write_text('{"scores": {"1": 4,}}', encoding="utf-8")
    extra = tmp / "extra.json"
    extra.write_text('{"nope": 1, "attendance": "many"}', encoding="utf-8")
    over = tmp / "over.json"
    over.write_text('{"scores": {"3": 40}}', encoding="utf-8")
    broken = tmp / "broken.toml"
    broken.write_text('[campaign]\ncode "x"\n', encoding="utf-8")
    unknown = tmp / "unknown.toml"
    unknown.write_text('[campaign]\ncode = "x-2027"\nname = "测试"\nyear = "next"\ncolour = 1\n', encoding="utf-8")
    sec1 = PEOPLE["sec1"]
    return [
        ["nosuch"], ["campaign", "shw"], ["show"], ["show", "B1", "--nope"], ["show", "B1", "extra"],
        ["list", "--stage", "bad"], ["list", "--grade", "最好"], ["advance", "B1"], ["advance", "B1", "--as"],
        ["record", "B1", str(bad_json), "--as", sec1], ["record", "B1", str(extra), "--as", sec1],
        ["record", "B1", str(over), "--as", sec1], ["record", "B1", str(tmp / "missing.json"), "--as", sec1],
        ["campaign", "create", "--file", str(broken)], ["campaign", "create", "--file", str(unknown)],
        ["show", "NOPE"], ["advance", "B1", "--as", sec1], ["advance", "B2", "--as", sec1],
        ["person", "add", "not-an-email", "--name", "某人", "--role", "org_department", "--scope", "C1"],
        ["person", "add", "x@test.cn", "--name", "某人", "--role", "boss"],
        ["demo", "--year", "x"], ["history", "B1", "--at", "yesterday"], ["show", "B1", "--now", "tomorrow"],
        ["import", str(tmp / "missing.csv")], ["complete", "B2", "x", "--as", PEOPLE["sec2"]],
        ["complete", "B2", "1", "--as", PEOPLE["sec2"], "--evidence", "x"],
        ["audit", "nosuch"], ["ballot", "open"], ["report", "nosuch"], ["user", "nosuch"], ["outbox", "--status", "x"],
        ["campaign", "show", "NOPE"], ["object", "B4", "--text", "a", "--as", sec1],
    ]


def _command_names(group: Any) -> str:
    """Every command's name: a list of commands (after “没有命令…”) names them as the person types them."""
    import click

    names = []
    for name, cmd in group.commands.items():
        names.append(name)
        if isinstance(cmd, click.Group):
            names.append(_command_names(cmd))
    return " ".join(names)


@SQLITE
def test_every_cli_refusal_speaks_chinese_one_problem_a_line(site: Site, db_url: str, tmp_path: Path) -> None:
    from service.cli import cli

    _stage_the_world(site)
    env = {"BRANCHFLOW_DATABASE_URL": db_url, "BRANCHFLOW_DATA_DIR": str(tmp_path / "data")}
    runner = CliRunner()
    bad: list[str] = []
    outputs: dict[str, str] = {}
    for args in _cli_cases(tmp_path):
        r = runner.invoke(cli, args, env=env, prog_name="branchflow")
        text = r.output
        assert r.exit_code != 0 and not isinstance(r.exception, AssertionError | TypeError | KeyError), (args, text)
        assert "Traceback" not in text and text.strip(), (args, text)
        outputs[" ".join(args)] = text
        files = " ".join(Path(a).read_text(encoding="utf-8") for a in args if a.startswith(str(tmp_path))
                         and Path(a).exists())
        if found := latin_words(text, typed=" ".join(args) + " " + files + " " + _command_names(cli)):
            bad.append(f"{args} → {found}: {text}")
    assert not bad, "\n".join(bad)

    over = next(v for k, v in outputs.items() if k.startswith("record B1") and "第 3 项得分" in v)
    assert "\n  第 3 项得分 40 超出范围" in over  # one problem a line
    r = runner.invoke(cli, ["list", "--grade", "先进"], env=env, prog_name="branchflow")
    assert r.exit_code == 0 and "共 " in r.output
    r = runner.invoke(cli, ["list", "--grade", "最好"], env=env, prog_name="branchflow")
    assert r.exit_code == 2 and "可用：先进" in r.output
    r = runner.invoke(cli, ["list", "--stage", "公示"], env=env, prog_name="branchflow")  # a stage by its name too
    assert r.exit_code == 0 and "B4" in r.output and "B1" not in r.output, r.output
    r = runner.invoke(cli, ["campaign", "show"], env=env, prog_name="branchflow")
    assert "签字法定人数：过半数" in r.output and "self" not in r.output, r.output
    r = runner.invoke(cli, ["show", "B1"], env=env, prog_name="branchflow")
    assert "所属：测试学院党委（C1） / GB1" in r.output, r.output
    for args in (["show", "B2"], ["show", "B3"], ["show", "B4"], ["campaign", "show"], ["list"], ["person", "list"]):
        r = runner.invoke(cli, args, env=env, prog_name="branchflow")  # what people read when all goes well, too
        assert r.exit_code == 0 and not latin_words(r.output, " ".join(args)), (args, latin_words(r.output), r.output)

    # a database never initialised: the way out, not SQLAlchemy's traceback
    empty = {"BRANCHFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}", "BRANCHFLOW_DATA_DIR": str(tmp_path / "e")}
    r = runner.invoke(cli, ["list"], env=empty, prog_name="branchflow")
    assert r.exit_code == 2 and "请先运行 `branchflow init`" in r.output and "Traceback" not in r.output, r.output

    # the real command, once: click's own words in Chinese, the hint, exit code 2
    p = subprocess.run([sys.executable, "-m", "service.cli", "advance", "B1"], cwd=tmp_path, text=True,
                       capture_output=True, env={"PYTHONPATH": str(ROOT), **env, "PATH": "/usr/bin:/bin"}, timeout=60,
                       check=False)
    assert p.returncode == 2 and p.stderr.startswith("错误：缺少选项“--as”（操作人邮箱"), p.stderr
    assert "运行“branchflow advance --help”查看用法。" in p.stderr or "查看用法" in p.stderr
    assert not latin_words(p.stderr, "advance B1")

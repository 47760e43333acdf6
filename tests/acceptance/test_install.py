"""The package as an IT office installs it: build the sdist and the wheel from this source tree, install the
wheel into a fresh venv outside the checkout (``/usr/bin/python3 -m venv``, the system Python), and run the
demo from an unrelated folder. Everything the program reads at run time — mail, web and report templates,
static files, presets, migrations — must come from the installed package: the mail goes out (``.eml``
files, no dead letters), the pages and the report HTML render, and ``audit verify`` passes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.acceptance.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
YEAR = "2026"


def _system_python() -> str:
    """``/usr/bin/python3`` when it can make a venv and is new enough; otherwise the Python running the tests."""
    probe = "import sys, venv, ensurepip; sys.exit(0 if sys.version_info >= (3, 11) else 1)"
    if Path("/usr/bin/python3").exists():
        r = subprocess.run(["/usr/bin/python3", "-c", probe], check=False, capture_output=True, timeout=60)
        if r.returncode == 0:
            return "/usr/bin/python3"
    return sys.executable


def _run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600,
         code: int = 0) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, check=False, cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout)
    assert r.returncode == code, f"{cmd} → {r.returncode}\nstdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-4000:]}"
    return r


def _copy_source(dest: Path) -> None:
    """The files of this tree that git would carry (tracked and new, not ignored); without git, the tree minus
    caches and build output. Building from a copy leaves nothing behind in the checkout."""
    if (ROOT / ".git").exists() and shutil.which("git"):
        listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT).stdout
        for name in filter(None, listed.split("\0")):
            src = ROOT / name
            if src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    else:
        shutil.copytree(ROOT, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", "branchflow-data", ".*_cache"))


@dataclass
class Installed:
    venv: Path
    cwd: Path
    env: dict[str, str]
    dist: Path

    def __call__(self, *args: str, code: int = 0, data: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if data:
            env["BRANCHFLOW_DATA_DIR"] = data
        return _run([str(self.venv / "bin" / "branchflow"), *args], cwd=self.cwd, env=env, code=code, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("install")
    assert not base.resolve().is_relative_to(ROOT), "the install must be outside the checkout"
    src, dist, venv, cwd = base / "src", base / "dist", base / "venv", base / "elsewhere"
    src.mkdir()
    cwd.mkdir()
    _copy_source(src)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRANCHFLOW_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    # sdist, then the wheel built from that sdist: a file missing from the sdist is missing from the wheel
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(src)], cwd=base, env=env)
    _run([_system_python(), "-m", "venv", str(venv)], cwd=base, env=env)
    wheels = list(dist.glob("branchflow-*.whl"))
    assert len(wheels) == 1, list(dist.iterdir())
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheels[0])],
         cwd=base, env=env)
    yield Installed(venv=venv, cwd=cwd, env=env, dist=dist)


def test_the_wheel_and_the_sdist_carry_what_the_program_reads_at_run_time(installed: Installed) -> None:
    import tarfile
    import zipfile

    with zipfile.ZipFile(next(installed.dist.glob("*.whl"))) as zf:
        wheel = zf.namelist()
    for name in ("branchflow_templates/mail/notices.subject.j2", "branchflow_templates/web/login.html",
                 "branchflow_templates/web/static/app.css", "branchflow_templates/reports/form.html",
                 "workflow/presets/haitang-2022.toml", "migrations/env.py", "migrations/versions/0001_initial_schema.py"):
        assert name in wheel, name
    with tarfile.open(next(installed.dist.glob("*.tar.gz"))) as tf:
        sdist = tf.getnames()
    assert any(n.endswith("/templates/mail/notices.subject.j2") for n in sdist)
    # and the installed program finds them inside the venv, not in this checkout
    probe = ("from workflow.resources import templates_root; from workflow.migrate import migrations_dir;"
             "print(templates_root()); print(migrations_dir())")
    where = _run([str(installed.venv / "bin" / "python"), "-c", probe], cwd=installed.cwd, env=installed.env).stdout
    for line in where.split():
        assert Path(line).resolve().is_relative_to(installed.venv.resolve()), where


def test_the_installed_demo_delivers_its_mail_renders_its_pages_and_reports_and_verifies(installed: Installed) -> None:
    r = installed("demo", "--year", YEAR)
    assert "审计校验" in r.stdout and "✓" in r.stdout
    said = re.search(r"密码均为 (\S+?)，", r.stdout)  # the demo tells its people's password
    assert said, r.stdout
    data = str(installed.cwd / "branchflow-data" / "demo")
    mails = list(Path(data, "mail").glob("*.eml"))
    assert len(mails) > 0

    out = installed("outbox", data=data).stdout
    first = out.splitlines()[0]
    assert re.search(r"已发送 [1-9]\d*", first) and "投递失败 0" in first, first
    assert installed("outbox", "--status", "dead", data=data).stdout.count("[投递失败]") == 0
    assert "校验通过" in installed("audit", "verify", data=data).stdout

    # the demo runs three committees' campaigns side by side: the operator names the one to report
    installed("report", "summary", "--format", "html", "--campaign", f"haitang-{YEAR}", "-o", "summary.html", data=data)
    html = (installed.cwd / "summary.html").read_text(encoding="utf-8")
    assert "党支部分类定级汇总表" in html and "党政办公室党支部" in html

    port = free_port()
    env = dict(installed.env, BRANCHFLOW_DATA_DIR=data)
    server = subprocess.Popen([str(installed.venv / "bin" / "branchflow"), "web", "--port", str(port),
                               "--now", f"{YEAR}-09-15T18:00+08:00"], cwd=installed.cwd, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=10) as web:
            for _ in range(400):
                try:
                    web.get("/login")
                    break
                except httpx.TransportError:
                    assert server.poll() is None, server.communicate()
                    time.sleep(0.05)
            page = web.get("/login")
            assert page.status_code == 200 and "登录" in page.text
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert csrf, page.text
            r = web.post("/login", data={"email": "zuzhibu@demo.edu.cn", "password": said.group(1), "next": "/",
                                         "csrf": csrf.group(1)}, follow_redirects=True)
            assert r.status_code == 200 and "组织部 钱卫东，您的待办事项" in r.text, r.text[:2000]
            branches = web.get("/branches")
            assert branches.status_code == 200 and "党政办公室党支部" in branches.text
            css = web.get("/static/app.css")
            assert css.status_code == 200 and len(css.content) > 100
            reports = web.get("/reports")
            assert reports.status_code == 200 and "党支部分类定级汇总表" in reports.text
    finally:
        server.terminate()
        server.communicate(timeout=30)

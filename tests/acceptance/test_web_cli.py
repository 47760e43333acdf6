"""`branchflow user add / user passwd / web` as subprocesses: an account made on the command line logs in to
the pages and the API of a server started by `branchflow web` on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.acceptance.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
ORG_CSV = """党委,党总支,支部编码,支部名称,支部类型,书记姓名,书记邮箱,党员人数,上次换届日期,最近活动日期,书记近两年严重违纪
生命学院党委,教工党总支,T01,生物系教工党支部,教工,王建国,wang@example.cn,12,2024-06-01,2026-03-01,否
"""


@pytest.fixture
def bf(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHFLOW_")}
    env.update(BRANCHFLOW_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "service.cli", *args], check=False, cwd=tmp_path, env=env, text=True,
                           capture_output=True, timeout=120)
        assert r.returncode == code, f"{args} → {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    run.env = env  # type: ignore[attr-defined]
    run.cwd = tmp_path  # type: ignore[attr-defined]
    (tmp_path / "org.csv").write_text(ORG_CSV, encoding="utf-8")
    run("init")
    run("import", "org.csv", "--now", "2026-03-01")
    run("campaign", "create", "--preset", "haitang-2022", "--year", "2026", "--now", "2026-03-01")
    return run


def test_accounts_from_the_command_line_log_in_to_the_served_pages_and_api(bf) -> None:  # type: ignore[no-untyped-def]
    # bad input: a clear Chinese error, and nothing created
    r = bf("user", "add", "a@x.cn", "--name", "张三", "--password", "abc", "--role", "auditor", code=2)
    assert "密码至少 12 位" in r.stderr
    r = bf("user", "add", "a@x.cn", "--name", "张三", "--password", "lanting-xu-2026", "--role", "committee_member",
           "--scope", "没有这个党委", code=2)
    assert "找不到编码为 '没有这个党委' 的党委" in r.stderr
    assert "a@x.cn" not in bf("person", "list").stdout
    r = bf("user", "passwd", "nobody@x.cn", "--password", "lanting-xu-2026", code=3)
    assert "找不到用户" in r.stderr

    r = bf("user", "add", "Audit@X.cn", "--name", "审计 陈", "--password", "first-pass-phrase-26", "--role", "auditor")
    assert "已创建登录账号 审计 陈 <audit@x.cn>：审计人员" in r.stdout
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "service.cli", "web", "--port", str(port), "--now", "2026-03-20"],
                              cwd=bf.cwd, env=bf.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(url + "/openapi.json", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        r = httpx.post(url + "/api/token", json={"email": "audit@x.cn", "password": "first-pass-phrase-26"})
        assert r.status_code == 200
        token = r.json()["access_token"]
        rows = httpx.get(url + "/api/branches", headers={"Authorization": f"Bearer {token}"}).json()
        assert [(b["code"], b["stage_label"], b["deadline"]) for b in rows] == [("T01", "调查摸底", "2026-03-31")]

        system = bf("user", "token", "audit@x.cn", "--days", "90").stdout.strip()  # for another system
        r = httpx.get(url + "/api/me", headers={"Authorization": f"Bearer {system}"})
        assert r.status_code == 200 and r.json()["email"] == "audit@x.cn"

        bf("user", "passwd", "audit@x.cn", "--password", "second-pass-phrase-26")
        assert httpx.get(url + "/api/me", headers={"Authorization": f"Bearer {system}"}).status_code == 401
        r = httpx.get(url + "/api/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401 and "密码已更改" in r.json()["message"]
        assert httpx.post(url + "/api/token", json={"email": "audit@x.cn", "password": "first-pass-phrase-26"}).status_code == 401
        assert httpx.post(url + "/api/token", json={"email": "audit@x.cn", "password": "second-pass-phrase-26"}).status_code == 200
        assert (bf.cwd / "data" / "secret.key").stat().st_mode & 0o777 == 0o600
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()  # type: ignore[union-attr]
        server.stderr.close()  # type: ignore[union-attr]

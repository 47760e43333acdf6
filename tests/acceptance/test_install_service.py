"""branchflow as an operator runs it: ``serve`` as a real process on SQLite and PostgreSQL, mail to a real SMTP
server (aiosmtpd) that refuses one recipient; ``/healthz`` and ``/readyz`` as JSON, ``branchflow status`` in
Chinese, JSON logs one line per event with the request id, forwarded headers believed only from the
configured proxy addresses."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifications.testing import RecordingHandler, SmtpServer, free_port
from workflow.migrate import head

ROOT = Path(__file__).resolve().parents[2]
ORG_CSV = """党委,党总支,支部编码,支部名称,支部类型,书记姓名,书记邮箱,党员人数,上次换届日期,最近活动日期,书记近两年严重违纪
生命学院党委,教工党总支,T01,生物系教工党支部,教工,王建国,wang@example.cn,12,2024-06-01,2026-03-01,否
生命学院党委,教工党总支,T02,化学系教工党支部,教工,李红,li@example.cn,9,2024-06-01,2026-03-01,否
"""
# the campaign's deadlines are long past on the real clock: overdue notices go to the organisation department
REFUSED = "org1@example.cn"


class Ops:
    def __init__(self, tmp: Path, db_url: str) -> None:
        self.tmp = tmp
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHFLOW_")}
        self.env.update(BRANCHFLOW_DATA_DIR=str(tmp / "data"), BRANCHFLOW_DATABASE_URL=db_url,
                        PYTHONPATH=str(ROOT))
        self.procs: list[subprocess.Popen[str]] = []

    def __call__(self, *args: str, code: int = 0, **env: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([sys.executable, "-m", "service.cli", *args], check=False, cwd=self.tmp,
                           env={**self.env, **env}, text=True, capture_output=True, timeout=120)
        assert r.returncode == code, f"{args} → {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
        return r

    def start(self, *args: str, log: Path, **env: str) -> str:
        """Start ``branchflow ARGS`` (a server) with its stderr to ``log``; return its URL once /healthz answers."""
        port = free_port()
        with open(log, "w") as f:
            proc = subprocess.Popen([sys.executable, "-m", "service.cli", *args, "--port", str(port)], cwd=self.tmp,
                                    env={**self.env, **env}, text=True, stdout=subprocess.DEVNULL, stderr=f)
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            assert proc.poll() is None, log.read_text()
            try:
                r = httpx.get(url + "/healthz", timeout=2)
                assert r.status_code == 200 and r.json() == {"status": "ok"}
                return url
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"server did not answer: {log.read_text()}")

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def ops(tmp_path: Path, db_url: str) -> Iterator[Ops]:
    o = Ops(tmp_path, db_url)
    (tmp_path / "org.csv").write_text(ORG_CSV, encoding="utf-8")
    o("init")
    o("import", "org.csv", "--now", "2026-03-01")
    o("campaign", "create", "--preset", "haitang-2022", "--year", "2026", "--now", "2026-03-01")
    for n in (1, 2):
        o("person", "add", f"org{n}@example.cn", "--name", f"组织部{n}", "--role", "org_department",
          "--scope", "生命学院党委")
    yield o
    o.stop_all()


def _lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_serve_reports_health_readiness_and_status_and_logs_one_json_line_per_event(ops: Ops, db_url: str) -> None:
    before = ops("status")
    assert f"数据库版本：{head()}（最新）" in before.stdout and "最近一次扫描：从未" in before.stdout
    assert "结论：可以工作" in before.stdout

    smtp = SmtpServer(RecordingHandler(reject={REFUSED}))
    with smtp:
        log = ops.tmp / "serve.log"
        url = ops.start("serve", "--sweep-seconds", "1", "--dispatch-seconds", "1", log=log,
                        BRANCHFLOW_SMTP_HOST="127.0.0.1", BRANCHFLOW_SMTP_PORT=str(smtp.port),
                        BRANCHFLOW_LOG_FORMAT="json", BRANCHFLOW_TRUSTED_PROXIES="127.0.0.1")
        ready: dict[str, Any] = {}
        for _ in range(300):
            r = httpx.get(url + "/readyz", timeout=10)
            ready = r.json()
            if ready.get("last_sweep") and ready["outbox"]["dead"] >= 1 and ready["outbox"]["backlog"] == 0:
                break
            time.sleep(0.2)
        assert r.status_code == 200 and ready["ready"] is True, ready
        assert ready["database"] == {"reachable": True, "dialect": "sqlite" if db_url.startswith("sqlite") else
                                     "postgresql"}
        assert ready["migrations"] == {"current": head(), "head": head(), "ok": True}
        assert ready["scheduler"] == {"role": "leader", "leader_present": True}
        assert ready["outbox"]["dead"] >= 1 and ready["outbox"]["held"] == 0, ready  # the refused recipient
        assert ready["outbox"]["by_status"]["sent"] >= 1 and len(smtp.messages) >= 1
        assert r.headers["x-request-id"]

        # forwarded headers from a trusted proxy (127.0.0.1 here): the real client and scheme in the log
        r = httpx.get(url + "/login", headers={"X-Request-ID": "trace-0001", "X-Forwarded-For": "203.0.113.7",
                                               "X-Forwarded-Proto": "https"})
        assert r.status_code == 200 and r.headers["x-request-id"] == "trace-0001"
        assert "secure" in r.headers["set-cookie"].lower()  # https at the proxy: the cookies are Secure
        plain = httpx.get(url + "/login")  # straight to the service over http: no Secure flag
        assert "set-cookie" in plain.headers and "secure" not in plain.headers["set-cookie"].lower()
        bad = httpx.get(url + "/login", headers={"X-Request-ID": "no spaces\tor tabs"})
        assert bad.headers["x-request-id"] != "no spaces\tor tabs"  # not a plain token: a fresh id instead

        status = ops("status", BRANCHFLOW_SMTP_HOST="127.0.0.1")
        assert "结论：可以工作" in status.stdout and "最近一次扫描：从未" not in status.stdout
        assert re.search(r"投递失败 [1-9]\d*", status.stdout), status.stdout
        if db_url.startswith("postgresql"):
            assert "有节点持有调度锁、正在扫描提醒" in status.stdout, status.stdout
        else:
            assert "单节点（SQLite）" in status.stdout
        as_json = json.loads(ops("status", "--json").stdout)
        assert as_json["outbox"]["dead"] == ready["outbox"]["dead"] and as_json["scheduler"]["role"] == "off"
    ops.stop_all()

    events = _lines(log)  # every line is one JSON object: nothing split over lines
    access = [e for e in events if e["logger"] == "branchflow.access" and e["request_id"] == "trace-0001"]
    assert len(access) == 1, events
    assert access[0]["path"] == "/login" and access[0]["status"] == 200
    assert access[0]["client"] == "203.0.113.7" and access[0]["scheme"] == "https"
    assert any(e["logger"] == "branchflow.mail" or e["logger"] == "branchflow.scheduler" for e in events), events
    assert all({"time", "level", "logger", "request_id", "message"} <= e.keys() for e in events)


def test_web_without_trusted_proxies_ignores_forwarded_headers_and_logs_text_lines(ops: Ops) -> None:
    log = ops.tmp / "web.log"
    url = ops.start("web", log=log)  # BRANCHFLOW_TRUSTED_PROXIES unset: nobody's forwarded headers count
    r = httpx.get(url + "/readyz", timeout=10)
    assert r.status_code == 200 and r.json()["scheduler"]["role"] == "off"  # web runs no scheduler
    r = httpx.get(url + "/login", headers={"X-Request-ID": "trace-0002", "X-Forwarded-For": "203.0.113.7",
                                           "X-Forwarded-Proto": "https"})
    assert r.status_code == 200 and "secure" not in r.headers["set-cookie"].lower()  # the claim is not believed
    httpx.get(url + "/v/ABCD-EFGH-JKLM")  # a voting code in the path must not reach the log
    ops.stop_all()
    text = log.read_text(encoding="utf-8")
    line = next(ln for ln in text.splitlines() if "[req trace-0002]" in ln)
    assert "GET /login 200" in line and "client=127.0.0.1" in line and re.search(r"scheme=http(\s|$)", line), line
    assert "203.0.113.7" not in text and "ABCD" not in text and "GET /v/<code>" in text


def test_status_and_readyz_on_a_database_that_was_never_initialised(tmp_path: Path) -> None:
    ops = Ops(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}")
    r = ops("status", code=9)
    assert "数据库版本：尚未初始化" in r.stdout and "请运行 branchflow init" in r.stdout
    assert "结论：不能工作" in r.stdout
    try:
        url = ops.start("web", log=tmp_path / "web.log")
        r = httpx.get(url + "/readyz", timeout=10)
        assert r.status_code == 503 and r.json()["ready"] is False
        assert "数据库尚未初始化：请运行 branchflow init" in r.json()["problems"]
    finally:
        ops.stop_all()
    bad = ops("status", code=2, BRANCHFLOW_LOG_FORMAT="xml")
    assert "环境变量设置无效：BRANCHFLOW_LOG_FORMAT" in bad.stderr

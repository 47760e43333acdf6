"""A throwaway PostgreSQL cluster for the tests: initdb in a temp dir, pg_ctl on 127.0.0.1, torn down after.

When run as root the server runs as the ``postgres`` user (PostgreSQL refuses to run as root). If no
server can be started, :func:`start` returns the reason instead, and the PostgreSQL tests skip with it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def _bindir() -> Path | None:
    env = os.environ.get("BRANCHFLOW_PG_BIN")
    candidates = [env] if env else sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    root: Path
    port: int
    bindir: Path
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, db: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{db}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> Cluster | str:
    """Start a cluster; return it, or a sentence saying why none could be started."""
    if os.environ.get("BRANCHFLOW_TEST_DATABASE_URL"):
        return "BRANCHFLOW_TEST_DATABASE_URL is set; use that server"
    bindir = _bindir()
    if bindir is None:
        return "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin"
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
        user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="branchflow-pg-"))
    os.chmod(root, 0o755)
    if user:
        shutil.chown(root, user)
    port = _free_port()
    c = Cluster(root=root, port=port, bindir=bindir, user=user)
    r = c._run("initdb", "-D", str(root / "data"), "--auth=trust", "-U", "postgres", "-E", "UTF8", "--locale=C")
    if r.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        return f"initdb failed: {r.stderr.strip()[:300]}"
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c full_page_writes=off -c max_connections=200"
    r = c._run("pg_ctl", "-D", str(root / "data"), "-o", opts, "-l", str(root / "log"), "-w", "-t", "60", "start")
    if r.returncode != 0:
        log = (root / "log").read_text(errors="replace")[-300:] if (root / "log").exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        return f"pg_ctl start failed: {r.stderr.strip()[:300]} {log}"
    return c


@contextmanager
def server(url: str | None, throwaway: bool) -> Iterator[str | None]:
    """The PostgreSQL server a bench script runs on: ``url`` as given, or with ``throwaway`` (its ``--pg``)
    a cluster started here and stopped after; ``None`` when neither (the script runs on SQLite). Exits with
    the reason when no cluster can be started."""
    if not throwaway:
        yield url
        return
    c = start()
    if isinstance(c, str):
        sys.exit(f"no PostgreSQL: {c}")
    try:
        yield c.url
    finally:
        c.stop()

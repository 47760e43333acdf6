"""Logs of a running service (``serve``, ``web``): one line per event on stderr, text or JSON.

``BRANCHFLOW_LOG_FORMAT=json`` writes one JSON object per line (``time``, ``level``, ``logger``,
``request_id``, ``message``, and the fields of the event: ``method``, ``path``, ``status``, ``ms``,
``client``, ``scheme`` for a request); the default ``text`` writes the same as one readable line.
A message or traceback that spans lines is kept on one line (newlines written as ``\\n``), so a log
shipper never splits an event. ``BRANCHFLOW_LOG_LEVEL`` (default ``INFO``) sets the threshold.

Every web/API request gets a request id — the client's ``X-Request-ID`` when it is a plain token
(letters, digits, ``._-``, at most 64), else a fresh one — returned in the ``X-Request-ID`` response
header and written on every line logged while the request runs, and on its access line (one per
request; uvicorn's own access log is off). Paths are logged without their query string, and the voting
code of an online ballot (``/v/CODE``) is never logged.

:func:`uvicorn_options` is what ``serve`` and ``web`` pass to ``uvicorn.run``: this logging, and the
forwarded headers (``X-Forwarded-For``/``-Proto``) trusted only from ``BRANCHFLOW_TRUSTED_PROXIES`` —
from those addresses ``request.url.scheme`` and ``request.client`` are the proxy's client's, from any
other address the headers are ignored.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from workflow.settings import Settings

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("branchflow_request_id", default="-")
_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SECRET_PATHS = (re.compile(r"^/v/[^/]+"), "/v/<code>")  # a ballot's voting code must not reach any log
# fields of a record that are the event's own (not logging's bookkeeping), written by both formats
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id"}
access_log = logging.getLogger("branchflow.access")
QUIET_PATHS = frozenset({"/healthz", "/readyz"})
_IN_ACCESS_MESSAGE = frozenset({"method", "path", "status"})  # the text line has them in its message


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


def _utc(record: logging.LogRecord) -> str:
    t = dt.datetime.fromtimestamp(record.created, dt.UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class TextFormatter(logging.Formatter):
    """``2026-04-18T01:00:00.000Z INFO branchflow.access [req 3f2a…] GET /api/me 200 …`` — one line."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items() if k not in _IN_ACCESS_MESSAGE)
        line = f"{_utc(record)} {record.levelname} {record.name} [req {getattr(record, 'request_id', '-')}] {msg}"
        if extra:
            line += f" {extra}"
        if record.exc_info:
            line += " " + self.formatException(record.exc_info)
        if record.stack_info:
            line += " " + self.formatStack(record.stack_info)
        return line.replace("\r", "\\r").replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": _utc(record), "level": record.levelname, "logger": record.name,
                               "request_id": getattr(record, "request_id", "-"), "message": record.getMessage()}
        out.update(_fields(record))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)  # json escapes newlines: one line


def configure(settings: Settings) -> None:
    """Root logging to stderr in the configured format (replaces handlers set up before)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)


def trusted_proxies(settings: Settings) -> list[str]:
    return [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``: our logging (configured now), forwarded headers as configured."""
    configure(settings)
    proxies = trusted_proxies(settings)
    return {
        "log_config": None,  # keep the handlers configured above
        "log_level": settings.log_level.lower(),
        "access_log": False,  # RequestLog writes the access line, with the request id
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": proxies or None,
        "server_header": False,
    }


def safe_path(path: str) -> str:
    pattern, replacement = _SECRET_PATHS
    return pattern.sub(replacement, path)


class RequestLog:
    """ASGI middleware: the request id (context, response header) and one access line per request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-request-id"), "")
        rid = given if _TOKEN.fullmatch(given) else uuid.uuid4().hex[:16]
        token = REQUEST_ID.set(rid)
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            access_log.exception("unhandled error in %s %s", scope.get("method", ""), safe_path(scope.get("path", "")))
            raise
        finally:
            client = scope.get("client")
            path = scope.get("path", "")
            quiet = path in QUIET_PATHS and status < 400  # a load balancer's probes every few seconds
            access_log.log(logging.DEBUG if quiet else logging.INFO, "%s %s %d", scope.get("method", ""),
                           safe_path(path), status, extra={
                "method": scope.get("method", ""), "path": safe_path(path), "status": status,
                "ms": round((time.perf_counter() - start) * 1000, 1), "client": client[0] if client else "-",
                "scheme": scope.get("scheme", "http")})
            REQUEST_ID.reset(token)


def install(app: Any) -> None:
    app.add_middleware(RequestLog)

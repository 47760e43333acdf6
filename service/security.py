"""Browser hardening on every response (OWASP ASVS 4.0 V14.4) and the cookie rules.

:class:`SecurityHeaders` is a pure ASGI middleware (it does not buffer streamed downloads) adding:

* ``Content-Security-Policy``: pages get :data:`PAGE_CSP` — scripts and styles only from the app's own
  ``/static`` files, no inline script or style (the templates carry none: widths are classes), no
  plugins, no ``<base>``, no framing, forms post only to the app. Files (any response with a
  ``Content-Disposition``: reports, exports) get :data:`FILE_CSP`: nothing may run, only their own
  inline ``<style>``, sandboxed. The API docs page (``/api/docs``, FastAPI's Swagger UI, and its OAuth2 helper page) are the
  pages with an inline script: it is allowed by its sha256 hash, computed from the page itself, and the UI's
  files from the CDN FastAPI names.
* ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin``,
  ``Cross-Origin-Opener-Policy: same-origin``, a ``Permissions-Policy`` switching off camera, microphone
  and location, ``Cache-Control: no-store`` on everything but ``/static``.
* ``Strict-Transport-Security`` only when the request came over HTTPS (the scheme uvicorn reports;
  behind a proxy, as ``BRANCHFLOW_TRUSTED_PROXIES`` lets it believe).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.sessions import Policy
from workflow.settings import Settings

PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
FILE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'; form-action 'none'; sandbox")
DOCS_CDN = "https://cdn.jsdelivr.net"
HSTS = "max-age=31536000"
DOCS_PAGES = frozenset({"/api/docs", "/docs/oauth2-redirect"})  # FastAPI's Swagger UI and its OAuth2 helper

COMMON = {
    b"x-frame-options": b"DENY",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"same-origin",
    b"cross-origin-opener-policy": b"same-origin",
    b"permissions-policy": b"camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}


def policy_of(settings: Settings) -> Policy:
    import datetime as dt

    return Policy(idle=dt.timedelta(minutes=settings.session_idle_minutes),
                  absolute=dt.timedelta(hours=settings.session_absolute_hours))


def cookie_secure(request: Request) -> bool:
    """Cookies carry ``Secure`` over HTTPS, and always when ``BRANCHFLOW_COOKIE_SECURE`` says so."""
    settings: Settings = request.app.state.runtime.settings
    return request.url.scheme == "https" or settings.cookie_secure


def docs_csp(html: bytes) -> str:
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode() + "'"
        for m in re.finditer(rb"<script>(.*?)</script>", html, re.DOTALL))
    return (f"default-src 'self'; script-src {DOCS_CDN} {hashes}; style-src {DOCS_CDN}; img-src 'self' data: "
            f"https://fastapi.tiangolo.com; connect-src 'self'; object-src 'none'; base-uri 'none'; "
            f"frame-ancestors 'none'; form-action 'self'")


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        https = scope.get("scheme") == "https"
        if path in DOCS_PAGES:
            await self._docs(scope, receive, send, https)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _headers(list(message.get("headers", [])), path, https)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _docs(self, scope: Scope, receive: Receive, send: Send, https: bool) -> None:
        start: dict[str, Any] = {}
        body = bytearray()

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await self.app(scope, receive, keep)
        headers = [(k, v) for k, v in _headers(list(start.get("headers", [])), scope["path"], https)
                   if k != b"content-security-policy"]
        headers.append((b"content-security-policy", docs_csp(bytes(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": bytes(body)})


def _headers(headers: list[tuple[bytes, bytes]], path: str, https: bool) -> list[tuple[bytes, bytes]]:
    have = {k.lower() for k, _ in headers}
    out = list(headers)
    is_file = b"content-disposition" in have
    if b"content-security-policy" not in have:
        out.append((b"content-security-policy", (FILE_CSP if is_file else PAGE_CSP).encode()))
    for k, v in COMMON.items():
        if k not in have:
            out.append((k, v))
    if not path.startswith("/static/") and b"cache-control" not in have:
        out.append((b"cache-control", b"no-store"))
    if https:
        out.append((b"strict-transport-security", HSTS.encode()))
    return out


def install(app: Any) -> None:
    app.add_middleware(SecurityHeaders)

"""The cabinet and the operator console: server-rendered pages (Jinja2) on a FastAPI app that the gateway's
ASGI app serves for every path outside /v1 and /admin/.

Every page and form needs a session (a cookie naming a session kept in Redis, see `sessions`); every form
carries a CSRF token (the session's, or before login a double-submit cookie) and a cross-site Origin is
refused. Pages show what `Accounts` and the documents of `gateway.account_admin` say: the same code paths as
/v1/balance, /v1/usage and the admin API. Answers are `no-store`, framed by nobody, with a strict CSP.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.config.model import Config
from gateway.http.client_address import ForwardedHeaders, TrustedProxies
from gateway.store.accounts import Accounts
from gateway.store.connection import AsyncStore
from gateway.store.keys import KeySpace
from gateway.web import account_pages, console, customer
from gateway.web.i18n import N_
from gateway.web.site import CSP, HERE, LoginRequired, Refused, Web, redirect

log = logging.getLogger("gateway.web")


class _Headers:
    """Security headers on every answer of the web app; `no-store` on all but the static files."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                headers += [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"x-frame-options", b"DENY"), (b"referrer-policy", b"same-origin"),
                            (b"cache-control", b"public, max-age=3600" if static else b"no-store")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def build_web_app(accounts: Accounts, config: Config, redis: AsyncStore, keyspace: KeySpace,
                  web: Web | None = None) -> ASGIApp:
    """`web`: the pages' shared state, when the caller keeps it (a reload hands it the new config)."""
    web = web or Web(accounts, config, redis, keyspace)
    app = FastAPI(title="Botech AI Gateway cabinet", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    customer.register(app, web)
    account_pages.register(app, web)
    console.register(app, web)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        target = request.url.path if request.method == "GET" else "/"
        query = f"?next={quote(target + ('?' + request.url.query if request.url.query else ''))}" \
            if target != "/" else ""
        return redirect(f"/login{query}")

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        viewer = await web.viewer(request)
        _ = web.gettext(request)
        message = _(exc.message) % exc.params if exc.params else _(exc.message)
        return await web.render(request, "error.html", viewer, exc.status, title=_(_title(exc.status)),
                                message=message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        viewer = await web.viewer(request)
        _ = web.gettext(request)
        message = _("There is no such page.") if exc.status_code == 404 else _(str(exc.detail))
        response = await web.render(request, "error.html", viewer, exc.status_code,
                                    title=_(_title(exc.status_code)), message=message)
        response.headers.update(exc.headers or {})  # e.g. Allow on a 405
        return response

    @app.exception_handler(ClientDisconnect)
    async def client_left(request: Request, exc: ClientDisconnect) -> Response:
        # a normal event (a closed tab, a dropped network): one short line, no traceback; the answer goes nowhere
        log.debug("client left during %s %s", request.method, request.url.path)
        return Response(status_code=400)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> Response:
        log.exception("cabinet page %s failed", request.url.path)
        return HTMLResponse("<!doctype html><title>Ошибка · Error</title><p>Что-то пошло не так на нашей стороне. "
                            "Попробуйте ещё раз.</p><p>Something went wrong on our side. Please try again.</p>",
                            status_code=500)

    s = config.settings
    return ForwardedHeaders(_Headers(app), TrustedProxies(s.forwarded_allow_ips), s.forwarded_header)


def _title(status: int) -> str:
    return {400: N_("Bad request"), 403: N_("Not allowed"), 404: N_("Not found"), 405: N_("Not allowed"),
            409: N_("Not possible"), 413: N_("Too large"), 429: N_("Too many attempts")}.get(status, N_("Error"))


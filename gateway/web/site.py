"""The cabinet's shared parts, used by every page module (gateway.web.customer, gateway.web.console): who is
looking (the session's viewer), forms (CSRF, Origin, once-only), rendering, redirects and notices.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from redis.asyncio import Redis

from gateway.account_admin import Money
from gateway.config.model import Config
from gateway.pricing import PriceBook
from gateway.store.accounts import Accounts, AccountView
from gateway.store.keys import KeySpace
from gateway.web import format as fmt
from gateway.web.passwords import Passwords
from gateway.web.payments import Payments, TopUps, providers_from
from gateway.web.sessions import LoginThrottle, Session, Sessions

log = logging.getLogger("gateway.web")

HERE = Path(__file__).resolve().parent
MAX_FORM_BYTES = 16 * 1024
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'")


class LoginRequired(Exception):
    pass


class Refused(Exception):
    """A 4xx page: bad CSRF token (403), not yours or not there (404), too large (413)..."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Viewer:
    session: Session
    account: AccountView

    @property
    def is_admin(self) -> bool:
        return self.account.role == "admin"


class Web:
    """What every page handler needs: the services, the session machinery and the renderer."""

    def __init__(self, accounts: Accounts, config: Config, redis: Redis, keyspace: KeySpace) -> None:
        s = config.settings
        self.accounts = accounts
        self.config = config
        self.settings = s
        self.redis = redis
        self.keyspace = keyspace
        self.prices = PriceBook(config.prices)
        self.sessions = Sessions(redis, keyspace, s.web_session_ttl_s)
        self.throttle = LoginThrottle(redis, keyspace, s.web_login_max_failures, s.web_login_window_s)
        self.passwords = Passwords(redis, keyspace)
        self.topups = TopUps(redis, keyspace)
        self.payments = Payments(accounts, self.topups, providers_from(config.payments))
        self.secure = s.web_cookie_secure
        prefix = "__Host-" if self.secure else ""
        self.session_cookie = f"{prefix}bt_session"
        self.csrf_cookie = f"{prefix}bt_csrf"
        self.jinja = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                                 undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.jinja.filters.update(fmt.FILTERS)
        self._catalogue: Any = None
        # the version in force and the last load or reload (set by the app: gateway.reload.status)
        self.config_status: Callable[[], Awaitable[dict[str, Any]]] | None = None

    def use(self, config: Config, prices: PriceBook) -> None:
        """A reload's config (gateway.reload): the catalogue and the console follow it."""
        self.config, self.prices, self._catalogue = config, prices, None

    def catalogue(self) -> Any:
        """The models & prices table of the config in force (built once per config)."""
        if self._catalogue is None:
            from gateway.web.catalogue import catalogue
            self._catalogue = catalogue(self.config, self.prices)
        return self._catalogue

    # -- who is asking ---------------------------------------------------------------------------------

    async def viewer(self, request: Request) -> Viewer | None:
        session = await self.sessions.get(request.cookies.get(self.session_cookie))
        if session is None:
            return None
        try:
            account = await self.accounts.account(session.account_id)
        except LookupError:
            await self.sessions.destroy(session)
            return None
        if account.status != "ACTIVE":   # a blocked account is logged out everywhere at its next request
            await self.sessions.destroy(session)
            return None
        return Viewer(session, account)

    async def customer(self, request: Request) -> Viewer:
        viewer = await self.viewer(request)
        if viewer is None:
            raise LoginRequired()
        return viewer

    async def operator(self, request: Request) -> Viewer:
        viewer = await self.customer(request)
        if not viewer.is_admin:
            raise Refused(404, "There is no such page.")
        return viewer

    async def money(self) -> Money:
        return Money(await self.accounts.usd_rub(), exact=True)

    # -- forms -----------------------------------------------------------------------------------------

    async def form(self, request: Request, viewer: Viewer | None) -> dict[str, str]:
        """The urlencoded body, once its CSRF token matches (the session's, or the pre-login cookie)."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
            raise Refused(403, "This form was sent from another site.")
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            raise Refused(400, "Send the form from the page.")
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_FORM_BYTES:
            raise Refused(413, "The form is too large.")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise Refused(413, "The form is too large.")
        try:
            fields = dict(parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=50))
        except (UnicodeDecodeError, ValueError):
            raise Refused(400, "The form could not be read.") from None
        expected = viewer.session.csrf if viewer is not None else request.cookies.get(self.csrf_cookie, "")
        given = fields.pop("csrf", "")
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise Refused(403, "The form has expired or did not come from this site. Reload the page and try "
                               "again.")
        return fields

    async def claim_once(self, nonce: str) -> bool:
        """True the first time a form's one-time token is used (a reload that re-posts gets False)."""
        if not nonce or len(nonce) > 64:
            return False
        return bool(await self.redis.set(f"{self.keyspace.p}:web:nonce:{nonce}", 1, nx=True, ex=86400))

    # -- answers ---------------------------------------------------------------------------------------

    def pre_login_token(self, request: Request) -> tuple[str, bool]:
        token = request.cookies.get(self.csrf_cookie, "")
        if 20 <= len(token) <= 64:
            return token, False
        return secrets.token_urlsafe(24), True

    def set_cookie(self, response: Response, name: str, value: str, max_age: int | None, samesite: str) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", secure=self.secure, httponly=True,
                            samesite=samesite)  # type: ignore[arg-type]

    async def render(self, request: Request, template: str, viewer: Viewer | None, status: int = 200,
                     **context: Any) -> HTMLResponse:
        csrf, new_cookie = (viewer.session.csrf, False) if viewer else self.pre_login_token(request)
        page = self.jinja.get_template(template).render(
            viewer=viewer, csrf=csrf, path=request.url.path, notice=_notice(request.query_params), **context)
        response = HTMLResponse(page, status_code=status)
        if new_cookie:
            self.set_cookie(response, self.csrf_cookie, csrf, None, "strict")
        return response


NOTICES = {
    "key-revoked": "The key is revoked: requests with it now get 401.",
    "key-updated": "The key's limits are saved.",
    "key-reposted": "That form was already sent: the key exists, and its secret cannot be shown again.",
    "logged-out": "You are logged out.",
    "topup-done": "The top-up is recorded in the ledger.",
    "correction-done": "The correction is recorded in the ledger.",
    "already-applied": "That form was already sent: nothing changed.",
    "account-blocked": "The account is blocked: its keys get 403 and its sessions are closed.",
    "account-unblocked": "The account is active again.",
    "key-blocked": "The key is blocked.",
    "key-unblocked": "The key is active again.",
    "rate-set": "The USD→RUB rate is saved.",
}


def _notice(query: Mapping[str, str]) -> str:
    return NOTICES.get(query.get("done", ""), "")


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


_LOCAL_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9/_.~%?=&+-]{0,500}")


def safe_next(target: str | None) -> str:
    """Only a plain path on this site (no scheme, no //host, no whitespace or backslash a browser would
    fold into one) may be a post-login destination."""
    if not target or not _LOCAL_PATH.fullmatch(target):
        return "/"
    return target



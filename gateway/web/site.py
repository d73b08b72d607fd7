"""The cabinet's shared parts, used by every page module (gateway.web.customer, gateway.web.console): who is
looking (the session's viewer), forms (CSRF, Origin, once-only), rendering, redirects and notices.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape


from gateway.account_admin import Money
from gateway.config.model import Config
from gateway.pricing import PriceBook
from gateway.store.accounts import Accounts, AccountView
from gateway.store.connection import AsyncStore, text
from gateway.store.keys import KeySpace
from gateway.web import format as fmt
from gateway.web import i18n
from gateway.web.alerts import Alerts, AlertSettings
from gateway.web.i18n import N_
from gateway.web.mail import Mailer
from gateway.web.passwords import Passwords
from gateway.web.payments import Payments, TopUps, providers_from
from gateway.web.sessions import LoginThrottle, Session, Sessions
from gateway.web.tokens import AddressBudget, OneTimeLinks

log = logging.getLogger("gateway.web")

HERE = Path(__file__).resolve().parent
MAX_FORM_BYTES = 16 * 1024
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'")


class LoginRequired(Exception):
    pass


class Refused(Exception):
    """A 4xx page: bad CSRF token (403), not yours or not there (404), too large (413)... The message is
    the English source text (marked with N_), translated when the page is rendered; `params` fill it."""

    def __init__(self, status: int, message: str, **params: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.params = params


@dataclass(frozen=True, slots=True)
class Viewer:
    session: Session
    account: AccountView

    @property
    def is_admin(self) -> bool:
        return self.account.role == "admin"


class Web:
    """What every page handler needs: the services, the session machinery and the renderer."""

    def __init__(self, accounts: Accounts, config: Config, redis: AsyncStore, keyspace: KeySpace) -> None:
        s = config.settings
        self.accounts = accounts
        self.config = config
        self.settings = s
        self.redis = redis
        self.keyspace = keyspace
        self.prices = PriceBook(config.prices)
        self.sessions = Sessions(redis, keyspace, s.web_session_ttl_s)
        self.throttle = LoginThrottle(redis, keyspace, s.web_login_max_failures, s.web_login_window_s)
        self.mailer = Mailer(s)
        self.links = OneTimeLinks(redis, keyspace)
        self.budget = AddressBudget(redis, keyspace, s.web_signups_per_hour)
        self.alerts = Alerts(redis, keyspace, accounts, s.alerts_allow_loopback)
        self.passwords = Passwords(redis, keyspace)
        self.topups = TopUps(redis, keyspace)
        self.payments = Payments(accounts, self.topups, providers_from(config.payments))
        self.secure = s.web_cookie_secure
        prefix = "__Host-" if self.secure else ""
        self.session_cookie = f"{prefix}bt_session"
        self.csrf_cookie = f"{prefix}bt_csrf"
        self.default_locale = i18n.pick(s.web_default_locale, "ru")
        self._background: asyncio.Task[None] | None = None
        self.jinja = {locale: _environment(locale) for locale in fmt.LOCALES}
        self._catalogue: Any = None
        # the version in force and the last load or reload (set by the app: gateway.reload.status)
        self.config_status: Callable[[], Awaitable[dict[str, Any]]] | None = None

    # -- background work -------------------------------------------------------------------------------

    def start_background(self) -> None:
        """Start (once per process, at its first cabinet request) the loop that asks the payment provider
        about pending top-ups until each is final, so a lost webhook does not leave a payment uncredited."""
        if self._background is None or self._background.done():
            self._background = asyncio.get_running_loop().create_task(self._background_loop())

    async def _background_loop(self) -> None:
        while True:
            try:
                await self.payments.poll_pending()
            except Exception:   # a Redis blip or a provider hiccup: the next round tries again
                log.exception("payment status poll failed")
            try:
                await self.alerts.check_all(self.send_alert)
            except Exception:
                log.exception("alert check failed")
            await asyncio.sleep(self.settings.web_payment_poll_s)

    async def send_alert(self, aid: str, login: str, name: str, data: dict[str, Any], a: AlertSettings) -> None:
        """One alert that just fired: a letter in the customer's language and/or the signed webhook."""
        event = {"type": name, "account_id": aid, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                 "data": data}
        if a.by_email:
            locale = i18n.pick(await self.account_locale(aid), self.default_locale)
            subject, body = self.letter(locale, "alert", event=event, data=data,
                                        base=self.settings.web_public_url)
            await self.mailer.send(login, subject, body)
        if a.webhook_url:
            self.alerts.post_later(a.webhook_url, a.secret, event)
        log.info("alert %s fired for %s", name, aid)

    # -- language --------------------------------------------------------------------------------------

    def locale(self, request: Request) -> str:
        """The customer's language: their choice (cookie, set at login from the account too) or the default."""
        return i18n.pick(request.cookies.get(i18n.LANG_COOKIE), self.default_locale)

    def gettext(self, request: Request) -> Any:
        """`_` for messages built in Python (errors, notices) in this request's language."""
        return i18n.translations(self.locale(request)).gettext

    def t(self, request: Request, message: str) -> str:
        """One message in this request's language (extracted by `pybabel extract -k t:2`)."""
        return str(i18n.translations(self.locale(request)).gettext(message))

    def remember_locale(self, response: Response, locale: str) -> None:
        response.set_cookie(i18n.LANG_COOKIE, locale, max_age=400 * 86400, path="/", secure=self.secure,
                            httponly=True, samesite="lax")

    async def account_locale(self, aid: str) -> str | None:
        raw = await self.redis.get(f"{self.keyspace.tag(aid)}:web:lang")
        return text(raw) if raw else None

    async def set_account_locale(self, aid: str, locale: str) -> None:
        await self.redis.set(f"{self.keyspace.tag(aid)}:web:lang", locale)

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
        self.start_background()
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
            raise Refused(404, N_("There is no such page."))
        return viewer

    def base_url(self, request: Request) -> str:
        """The service's public address (links in letters, the code sample, payment returns)."""
        return self.settings.web_public_url or str(request.base_url).rstrip("/")

    def letter(self, locale: str, template: str, **context: Any) -> tuple[str, str]:
        """(subject, body) of a letter from templates/mail/<template>.txt: its first line is the subject."""
        text = self.jinja[locale].get_template(f"mail/{template}.txt").render(**context)
        subject, _, body = text.partition("\n")
        return subject.strip(), body.strip() + "\n"

    async def unverified(self, aid: str) -> bool:
        """True while a signed-up customer has not confirmed the address (and the gate is on)."""
        if not (self.settings.web_require_verified_email and self.mailer.enabled):
            return False
        return bool(await self.redis.exists(f"{self.keyspace.tag(aid)}:web:unverified"))

    async def money(self) -> Money:
        return Money(await self.accounts.usd_rub(), exact=True)

    # -- forms -----------------------------------------------------------------------------------------

    async def form(self, request: Request, viewer: Viewer | None) -> dict[str, str]:
        """The urlencoded body, once its CSRF token matches (the session's, or the pre-login cookie)."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host", ""):
            raise Refused(403, N_("This form was sent from another site."))
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            raise Refused(400, N_("Send the form from the page."))
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_FORM_BYTES:
            raise Refused(413, N_("The form is too large."))
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise Refused(413, N_("The form is too large."))
        try:
            fields = dict(parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=50))
        except (UnicodeDecodeError, ValueError):
            raise Refused(400, N_("The form could not be read.")) from None
        expected = viewer.session.csrf if viewer is not None else request.cookies.get(self.csrf_cookie, "")
        given = fields.pop("csrf", "")
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise Refused(403, N_("The form has expired or did not come from this site. Reload the page and try "
                                  "again."))
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
                            samesite=samesite)  # type: ignore[arg-type]  # starlette wants a Literal; ours is checked config

    async def render(self, request: Request, template: str, viewer: Viewer | None, status: int = 200,
                     **context: Any) -> HTMLResponse:
        csrf, new_cookie = (viewer.session.csrf, False) if viewer else self.pre_login_token(request)
        locale = self.locale(request)
        _ = i18n.translations(locale).gettext
        for name, empty in (("errors", {}), ("form", {}), ("confirm", ""), ("raw", {})):
            context.setdefault(name, empty)
        notice = NOTICES.get(request.query_params.get("done", ""), "")
        page = self.jinja[locale].get_template(template).render(
            viewer=viewer, csrf=csrf, path=request.url.path, notice=_(notice) if notice else "", lang=locale,
            languages=i18n.NAMES, here=_here(request), **context)
        response = HTMLResponse(page, status_code=status)
        if new_cookie:
            self.set_cookie(response, self.csrf_cookie, csrf, None, "strict")
        return response


NOTICES = {
    "key-revoked": N_("The key is revoked: requests with it now get 401."),
    "key-updated": N_("The key's limits are saved."),
    "key-reposted": N_("That form was already sent: the key exists, and its secret cannot be shown again."),
    "logged-out": N_("You are logged out."),
    "topup-done": N_("The top-up is recorded in the ledger."),
    "correction-done": N_("The correction is recorded in the ledger."),
    "already-applied": N_("That form was already sent: nothing changed."),
    "account-blocked": N_("The account is blocked: its keys get 403 and its sessions are closed."),
    "account-unblocked": N_("The account is active again."),
    "key-blocked": N_("The key is blocked."),
    "key-unblocked": N_("The key is active again."),
    "rate-set": N_("The USD→RUB rate is saved."),
    "lang-set": N_("The language is saved."),
    "verify-sent": N_("We sent a new confirmation link to your address."),
    "password-reset": N_("The password is changed. Log in with the new one."),
    "password-changed": N_("The password is changed; your other sessions are closed."),
    "alerts-saved": N_("The alerts are saved."),
}


def _environment(locale: str) -> Environment:
    """One Jinja environment per language: its catalogue installed, its formatting filters."""
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      extensions=["jinja2.ext.i18n"])
    env.install_gettext_translations(i18n.translations(locale), newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(fmt.filters(locale))
    env.globals["money_html"] = lambda usd, rub, kind="balance": fmt.money_html(usd, rub, locale, kind)
    return env


def _here(request: Request) -> str:
    """This page as a post-switch destination (GET pages only; a POST answer goes back to its form's page)."""
    if request.method != "GET":
        return safe_next(request.url.path)
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "topup"])
    return safe_next(request.url.path + ("?" + query if query else ""))


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


_LOCAL_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9/_.~%?=&+-]{0,500}")


def safe_next(target: str | None) -> str:
    """Only a plain path on this site (no scheme, no //host, no whitespace or backslash a browser would
    fold into one) may be a post-login destination."""
    if not target or not _LOCAL_PATH.fullmatch(target):
        return "/"
    return target



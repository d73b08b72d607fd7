"""The customer's own account: sign-up with address confirmation, password reset by a one-time link,
and the Settings page (password change, language, alerts).

Sign-up and reset answers are the same whether or not the address has an account (the letter says which),
and both are limited per client address; the confirmation gate keeps an unconfirmed account from making
an API key (`web.require_verified_email`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from gateway.http.client_address import client_host
from gateway.store.accounts import LOGIN_RE, ConflictError, InvalidInput, NotFoundError
from gateway.web.alerts import parse_form as parse_alerts
from gateway.web.forms import FieldError
from gateway.web.i18n import N_
from gateway.web.passwords import MAX_LENGTH, MIN_LENGTH, hash_password
from gateway.web.site import Refused, Viewer, Web, redirect

log = logging.getLogger("gateway.web")


def check_email(email: str) -> None:
    if not LOGIN_RE.match(email) or "." not in email.rsplit("@", 1)[-1]:
        raise FieldError("email", N_("Enter an email address such as name@example.com."))


def check_new_password(password: str, again: str, field: str = "password") -> None:
    if len(password) < MIN_LENGTH:
        raise FieldError(field, N_("The password must be at least %(n)s characters long."), {"n": MIN_LENGTH})
    if len(password) > MAX_LENGTH:
        raise FieldError(field, N_("The password must be at most %(n)s characters long."), {"n": MAX_LENGTH})
    if password != again:
        raise FieldError(field + "2", N_("The two passwords differ."))


def register(app: FastAPI, web: Web) -> None:
    accounts = web.accounts
    s = web.settings

    def refusal(request: Request, exc: FieldError) -> dict[str, Any]:
        text = exc.text(web.gettext(request), web.locale(request))
        return {"error": text, "errors": {exc.field: text}}

    async def mail(request: Request, to: str, template: str, **context: Any) -> None:
        subject, body = web.letter(web.locale(request), template, base=web.base_url(request), email=to, **context)
        await web.mailer.send(to, subject, body)

    # -- sign up and confirm the address -------------------------------------------------------------

    @app.get("/signup")
    async def signup_page(request: Request) -> Response:
        if await web.viewer(request):
            return redirect("/")
        return await web.render(request, "signup.html", None, title=web.t(request, "Sign up"), email="", error="")

    @app.post("/signup")
    async def signup(request: Request) -> Response:
        form = await web.form(request, None)
        email, password = form.get("email", "").strip().lower()[:320], form.get("password", "")
        try:
            check_email(email)
            check_new_password(password, form.get("password2", ""))
        except FieldError as exc:
            return await web.render(request, "signup.html", None, 400, title=web.t(request, "Sign up"),
                                    email=email, **refusal(request, exc))
        if not await web.budget.spend("signup", client_host(request.scope)):
            return await web.render(request, "signup.html", None, 429, title=web.t(request, "Sign up"),
                                    email=email, error=web.t(request, "Too many sign-ups from your network. Try "
                                                                      "again in an hour."))
        hashed = await asyncio.to_thread(hash_password, password)   # in both branches: timing tells nothing
        try:
            account = await accounts.create_account(email, "customer")
        except (ConflictError, InvalidInput):
            # the address has an account: the same answer here, and a letter to its owner (a few an hour)
            if await web.budget.spend("letter", email):
                await mail(request, email, "already")
            return redirect("/signup/sent")
        await web.passwords.set_hash(account.id, hashed)
        await web.redis.set(f"{web.keyspace.tag(account.id)}:web:unverified", 1)
        token = await web.links.issue("verify", account.id, s.web_verify_ttl_s)
        await mail(request, email, "verify", link=f"{web.base_url(request)}/verify?token={token}")
        log.info("cabinet sign-up %s", account.id)
        return redirect("/signup/sent")

    @app.get("/signup/sent")
    async def signup_sent(request: Request) -> Response:
        return await web.render(request, "sent.html", None, title=web.t(request, "Check your mail"),
                                kind="signup")

    @app.get("/verify")
    async def verify(request: Request) -> Response:
        aid = await web.links.consume("verify", request.query_params.get("token", ""))
        if aid is None:
            raise Refused(400, N_("This link has expired or was already used."))
        await web.redis.delete(f"{web.keyspace.tag(aid)}:web:unverified")
        viewer = await web.viewer(request)
        return await web.render(request, "sent.html", viewer, title=web.t(request, "Address confirmed"),
                                kind="verified")

    @app.post("/verify/resend")
    async def resend(request: Request) -> Response:
        viewer = await web.customer(request)
        await web.form(request, viewer)
        if await web.unverified(viewer.account.id) and \
                await web.budget.spend("resend", viewer.account.id):
            token = await web.links.issue("verify", viewer.account.id, s.web_verify_ttl_s)
            await mail(request, viewer.account.login, "verify",
                       link=f"{web.base_url(request)}/verify?token={token}")
        return redirect("/keys?done=verify-sent")

    # -- forgotten password --------------------------------------------------------------------------

    @app.get("/password/forgot")
    async def forgot_page(request: Request) -> Response:
        return await web.render(request, "forgot.html", await web.viewer(request),
                                title=web.t(request, "Reset the password"), email="", error="")

    @app.post("/password/forgot")
    async def forgot(request: Request) -> Response:
        viewer = await web.viewer(request)
        form = await web.form(request, viewer)
        email = form.get("email", "").strip().lower()[:320]
        try:
            check_email(email)
        except FieldError as exc:
            return await web.render(request, "forgot.html", viewer, 400,
                                    title=web.t(request, "Reset the password"), email=email, **refusal(request, exc))
        if not await web.budget.spend("reset", client_host(request.scope)):
            return await web.render(request, "forgot.html", viewer, 429,
                                    title=web.t(request, "Reset the password"), email=email,
                                    error=web.t(request, "Too many requests from your network. Try again in an "
                                                         "hour."))
        try:
            account = await accounts.account_by_login(email)
        except NotFoundError:
            account = None
        if account is not None and account.status == "ACTIVE" and await web.budget.spend("letter", email):
            token = await web.links.issue("reset", account.id, s.web_reset_ttl_s)
            await mail(request, email, "reset", link=f"{web.base_url(request)}/password/reset?token={token}",
                       minutes=max(1, s.web_reset_ttl_s // 60))
        return redirect("/password/sent")   # the same answer whether or not the address has an account

    @app.get("/password/sent")
    async def reset_sent(request: Request) -> Response:
        return await web.render(request, "sent.html", await web.viewer(request),
                                title=web.t(request, "Check your mail"), kind="reset")

    @app.get("/password/reset")
    async def reset_page(request: Request) -> Response:
        token = request.query_params.get("token", "")
        if await web.links.peek("reset", token) is None:
            raise Refused(400, N_("This link has expired or was already used."))
        return await web.render(request, "reset.html", None, title=web.t(request, "New password"), token=token,
                                error="")

    @app.post("/password/reset")
    async def reset(request: Request) -> Response:
        form = await web.form(request, None)
        token, password = form.get("token", ""), form.get("password", "")
        try:
            check_new_password(password, form.get("password2", ""))
        except FieldError as exc:
            return await web.render(request, "reset.html", None, 400, title=web.t(request, "New password"),
                                    token=token, **refusal(request, exc))
        aid = await web.links.consume("reset", token)
        if aid is None:
            raise Refused(400, N_("This link has expired or was already used."))
        account = await accounts.account(aid)
        await web.passwords.set(aid, password)
        await web.sessions.destroy_all(aid)              # whoever knew the old password is logged out
        await web.redis.delete(f"{web.keyspace.tag(aid)}:web:unverified")   # the link proved the address
        await web.throttle.reset(account.login, client_host(request.scope))
        await mail(request, account.login, "changed")
        return redirect("/login?done=password-reset")

    # -- settings ------------------------------------------------------------------------------------

    async def settings_page(request: Request, viewer: Viewer, status: int = 200, **extra: Any) -> Response:
        alerts = await web.alerts.get(viewer.account.id)
        context: dict[str, Any] = {"error": "", "alerts": alerts, "alert_error": "",
                                   "unverified": await web.unverified(viewer.account.id)}
        context.update(extra)
        return await web.render(request, "settings.html", viewer, status, title=web.t(request, "Settings"),
                                **context)

    @app.get("/settings")
    async def settings(request: Request) -> Response:
        return await settings_page(request, await web.customer(request))

    @app.post("/settings/password")
    async def change_password(request: Request) -> Response:
        viewer = await web.customer(request)
        form = await web.form(request, viewer)
        aid = viewer.account.id
        try:
            if not await web.passwords.verify(aid, form.get("current", "")):
                raise FieldError("current", N_("The current password is not right."))
            check_new_password(form.get("password", ""), form.get("password2", ""))
        except FieldError as exc:
            return await settings_page(request, viewer, 400, **refusal(request, exc))
        await web.passwords.set(aid, form["password"])
        await web.sessions.destroy_all(aid)                  # every other browser is logged out...
        token = await web.sessions.create(aid)               # ...this one stays in
        await mail(request, viewer.account.login, "changed")
        response = redirect("/settings?done=password-changed")
        web.set_cookie(response, web.session_cookie, token, s.web_session_ttl_s, "lax")
        return response

    @app.post("/settings/alerts")
    async def save_alerts(request: Request) -> Response:
        viewer = await web.customer(request)
        form = await web.form(request, viewer)
        current = await web.alerts.get(viewer.account.id)
        try:
            chosen = await asyncio.to_thread(parse_alerts, form, current, s.alerts_allow_loopback)
        except FieldError as exc:
            text = exc.text(web.gettext(request), web.locale(request))
            return await settings_page(request, viewer, 400, alert_error=text, errors={exc.field: text},
                                       form=form)
        await web.alerts.save(viewer.account.id, chosen)
        return redirect("/settings?done=alerts-saved")

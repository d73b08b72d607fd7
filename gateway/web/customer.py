"""The customer's cabinet: sign up, log in and out, dashboard, keys, history, usage, billing, models."""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.account_admin import ID_RE, account_doc, key_doc, ledger_doc
from gateway.config.model import pattern_matches
from gateway.http.client_address import client_host
from gateway.money import usd_to_nano
from gateway.store.accounts import NotFoundError
from gateway.web import charts, forms, history, i18n
from gateway.web.format import LOCALES, money, number
from gateway.web.forms import FieldError
from gateway.web.i18n import N_
from gateway.web.payments import MAX_WEBHOOK_BYTES, BadSignature, PaymentError, WebhookRejected
from gateway.web.site import Refused, Viewer, Web, redirect, safe_next

log = logging.getLogger("gateway.web")

MAX_KEY_LIMIT_USD = Decimal(1_000_000)
MAX_RPM, MAX_TPM = 1_000_000, 1_000_000_000


def client_address(request: Request) -> str:
    """The customer's address: the TCP peer, or the client a trusted reverse proxy names (`client_address`)."""
    return client_host(request.scope)


def today() -> date:
    return datetime.now(UTC).date()


async def own_key(web: Web, viewer: Viewer, kid: str) -> str:
    """The key id if it is this account's; any other key is 'not found', whoever owns it."""
    if not ID_RE.match(kid):
        raise Refused(404, N_("There is no such key."))
    try:
        owner = await web.accounts.key_owner(kid)
    except NotFoundError:
        raise Refused(404, N_("There is no such key.")) from None
    if owner != viewer.account.id:
        raise Refused(404, N_("There is no such key."))
    return kid


def parse_key_form(form: dict[str, str], enabled: list[str]) -> dict[str, Any]:
    """name, monthly limit (USD, blank = none), allowed models (blank = all), rpm, tpm (blank = 0).
    Allowed models must each match an enabled model: a pattern that matches none would make a dead key."""
    name = form.get("name", "").strip()
    if len(name) > 100:
        raise FieldError("name", N_("The name may have at most 100 characters."))
    limit_text = form.get("monthly_limit_usd", "").strip()
    limit = None
    if limit_text:
        limit = usd_to_nano(forms.plain_decimal(limit_text, "monthly_limit_usd", low=Decimal(0),
                                                high=MAX_KEY_LIMIT_USD))
    models = [m.strip() for m in form.get("models", "").replace(",", " ").split() if m.strip()]
    if len(models) > 100:
        raise FieldError("models", N_("At most 100 model names or prefixes."))
    for pattern in models:
        if len(pattern) > 200 or "*" in pattern[:-1]:
            raise FieldError("models", N_("“%(pattern)s” must be a name or a prefix ending in *."),
                             {"pattern": pattern[:200]})
        if not any(pattern_matches(pattern, m) for m in enabled):
            raise FieldError("models", N_("“%(pattern)s” matches no model we serve; see Models & prices."),
                             {"pattern": pattern})
    rpm = forms.whole(form.get("rpm", ""), "rpm", MAX_RPM)
    tpm = forms.whole(form.get("tpm", ""), "tpm", MAX_TPM)
    return {"name": name, "monthly_limit": limit, "models": models, "rpm": rpm, "tpm": tpm}


def register(app: FastAPI, web: Web) -> None:
    accounts = web.accounts

    # -- sign up, log in, log out --------------------------------------------------------------------

    @app.get("/login")
    async def login_page(request: Request) -> Response:
        if await web.viewer(request):
            return redirect(safe_next(request.query_params.get("next")))
        _ = web.gettext(request)
        return await web.render(request, "login.html", None, title=_("Log in"), email="", error="",
                                next=safe_next(request.query_params.get("next")))

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await web.form(request, None)
        email, password = form.get("email", "").strip().lower()[:320], form.get("password", "")
        target = safe_next(form.get("next"))
        address = client_address(request)
        tr = i18n.translations(web.locale(request))

        async def again(status: int, error: str) -> Response:
            return await web.render(request, "login.html", None, status, title=tr.gettext("Log in"), email=email,
                                    error=error, next=target)

        throttled = await web.throttle.check(email, address)
        if throttled is not None:
            minutes = -(-throttled.retry_after_s // 60)
            return await again(429, tr.ngettext("Too many failed attempts. Try again in %(num)s minute or reset "
                                                "the password.",
                                                "Too many failed attempts. Try again in %(num)s minutes or reset "
                                                "the password.", minutes) % {"num": minutes})
        try:
            account = await accounts.account_by_login(email) if email else None
        except NotFoundError:
            account = None
        if not await web.passwords.verify(account.id if account else None, password) or account is None:
            await web.throttle.failed(email, address)
            log.info("failed cabinet login from %s", address)
            return await again(401, tr.gettext("Wrong email or password."))
        if account.status != "ACTIVE":
            return await again(403, tr.gettext("This account is blocked. Please contact support."))
        await web.throttle.succeeded(email, address)
        token = await web.sessions.create(account.id)
        response = redirect(target)
        web.set_cookie(response, web.session_cookie, token, web.settings.web_session_ttl_s, "lax")
        chosen = await web.account_locale(account.id)   # the language this customer chose elsewhere
        if chosen in LOCALES:
            web.remember_locale(response, chosen)
        response.delete_cookie(web.csrf_cookie, path="/", secure=web.secure, httponly=True, samesite="strict")
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        viewer = await web.customer(request)
        await web.form(request, viewer)
        await web.sessions.destroy(viewer.session)
        response = redirect("/login?done=logged-out")
        response.delete_cookie(web.session_cookie, path="/", secure=web.secure, httponly=True, samesite="lax")
        return response

    @app.post("/lang")
    async def set_language(request: Request) -> Response:
        """The language switch in every page's header: a cookie, and the account's choice when logged in."""
        viewer = await web.viewer(request)
        form = await web.form(request, viewer)
        locale = form.get("lang", "")
        if locale not in LOCALES:
            raise Refused(400, N_("There is no such language."))
        if viewer is not None:
            await web.set_account_locale(viewer.account.id, locale)
        response = redirect(safe_next(form.get("back")))
        web.remember_locale(response, locale)
        return response

    # -- dashboard -----------------------------------------------------------------------------------

    @app.get("/")
    async def dashboard(request: Request) -> Response:
        viewer = await web.customer(request)
        aid, money = viewer.account.id, await web.money()
        day = today()
        usage = await accounts.usage(aid, day, day)
        keys = [key_doc(k, money) for k in await accounts.list_keys(aid)]
        recent, _ = await history.page(accounts, aid, history.Filter(), money, limit=5)
        return await web.render(request, "dashboard.html", viewer, title=web.t(request, "Dashboard"),
                                account=account_doc(viewer.account, money), today=usage["period"],
                                keys=[k for k in keys if k["status"] != "REVOKED"],
                                recent=recent, key_names=_key_names(keys), rate=money.rate)

    # -- keys ----------------------------------------------------------------------------------------

    def api_base(request: Request) -> str:
        """Where customers send API calls: the configured public URL, else this request's own origin."""
        return web.settings.web_public_url or str(request.base_url).rstrip("/")

    async def keys_page(request: Request, viewer: Viewer, status: int = 200, **extra: Any) -> Response:
        money = await web.money()
        keys = [key_doc(k, money) for k in await accounts.list_keys(viewer.account.id)]
        context: dict[str, Any] = {"created": None, "error": "", "form": {}, "nonce": secrets.token_urlsafe(16),
                                   "api_base": api_base(request),
                                   "unverified": await web.unverified(viewer.account.id)}
        context.update(extra)
        return await web.render(request, "keys.html", viewer, status, title=web.t(request, "API keys"),
                                keys=keys, **context)

    def key_refusal(request: Request, exc: FieldError) -> dict[str, Any]:
        text = exc.text(web.gettext(request), web.locale(request))
        return {"error": text, "errors": {exc.field: text}}

    def zero_limit(request: Request, spec: dict[str, Any], form: dict[str, str]) -> str:
        """A $0 monthly limit makes a key that can spend nothing: the customer confirms it is meant."""
        if spec["monthly_limit"] == 0 and form.get("confirm") != "1":
            return web.t(request, "A monthly limit of 0 means every paid request with this key is refused. "
                                        "Tick to confirm, or leave the limit blank for no limit.")
        return ""

    @app.get("/keys")
    async def keys(request: Request) -> Response:
        return await keys_page(request, await web.customer(request))

    @app.post("/keys")
    async def create_key(request: Request) -> Response:
        viewer = await web.customer(request)
        form = await web.form(request, viewer)
        if await web.unverified(viewer.account.id):
            return await keys_page(request, viewer, 403, form=form, error=web.t(
                request, "Confirm your email address first: open the link we sent you."))
        try:
            spec = parse_key_form(form, [m.name for m in web.config.enabled_models])
        except FieldError as exc:
            return await keys_page(request, viewer, 400, form=form, **key_refusal(request, exc))
        confirm = zero_limit(request, spec, form)
        if confirm:
            return await keys_page(request, viewer, 400, form=form, confirm=confirm, error=confirm,
                                   errors={"monthly_limit_usd": confirm})
        if not await web.claim_once(form.get("nonce", "")):
            return redirect("/keys?done=key-reposted")   # a reload re-posting the form makes no second key
        created = await accounts.create_key(viewer.account.id, **spec)
        money = await web.money()
        # the only page that ever holds the secret; `no-store`, and it cannot be fetched again
        return await keys_page(request, viewer, 201, created={"secret": created.secret,
                                                              "key": key_doc(created.key, money)})

    @app.get("/keys/{kid}")
    async def key_page(request: Request, kid: str) -> Response:
        viewer = await web.customer(request)
        await own_key(web, viewer, kid)
        view = await accounts.key(viewer.account.id, kid)
        return await web.render(request, "key.html", viewer, title=web.t(request, "Key %(prefix)s")
                                % {"prefix": view.prefix}, key=key_doc(view, await web.money()), error="")

    @app.post("/keys/{kid}")
    async def update_key(request: Request, kid: str) -> Response:
        viewer = await web.customer(request)
        form = await web.form(request, viewer)
        await own_key(web, viewer, kid)
        view = await accounts.key(viewer.account.id, kid)
        _ = web.gettext(request)
        if view.status == "REVOKED":
            raise Refused(409, N_("A revoked key cannot be changed."))
        try:
            spec = parse_key_form(form | {"name": view.name}, [m.name for m in web.config.enabled_models])
            confirm = zero_limit(request, spec, form)
        except FieldError as exc:
            confirm, refusal = "", key_refusal(request, exc)
        else:
            refusal = {"error": confirm, "errors": {"monthly_limit_usd": confirm}} if confirm else {}
        if refusal:
            return await web.render(request, "key.html", viewer, 400, title=_("Key %(prefix)s") % {
                "prefix": view.prefix}, key=key_doc(view, await web.money()), form=form, confirm=confirm,
                **refusal)
        await accounts.update_key_limits(kid, monthly_limit=spec["monthly_limit"],
                                         clear_limit=spec["monthly_limit"] is None, models=spec["models"],
                                         rpm=spec["rpm"], tpm=spec["tpm"])
        return redirect("/keys?done=key-updated")

    @app.post("/keys/{kid}/revoke")
    async def revoke_key(request: Request, kid: str) -> Response:
        viewer = await web.customer(request)
        await web.form(request, viewer)
        await accounts.revoke_key(await own_key(web, viewer, kid))
        return redirect("/keys?done=key-revoked")

    # -- history -------------------------------------------------------------------------------------

    async def own_filter(viewer: Viewer, request: Request) -> tuple[history.Filter, list[dict[str, Any]],
                                                                    dict[str, str]]:
        q = request.query_params
        money = await web.money()
        keys = [key_doc(k, money) for k in await accounts.list_keys(viewer.account.id)]
        key = q.get("key", "")
        if key and key not in {k["id"] for k in keys}:
            raise Refused(404, N_("There is no such key."))
        f, errors = history.filter_of(q, web.gettext(request), web.locale(request))
        return history.Filter(key=key, model=f.model, start=f.start, end=f.end), keys, errors

    @app.get("/history")
    async def history_page(request: Request) -> Response:
        viewer = await web.customer(request)
        f, keys, errors = await own_filter(viewer, request)
        before = request.query_params.get("before") or None
        if before is not None and not history.STREAM_ID.fullmatch(before):
            before = None
        rows, next_before = await history.page(accounts, viewer.account.id, f, await web.money(), before)
        return await web.render(request, "history.html", viewer, 400 if errors else 200,
                                title=web.t(request, "History"), rows=rows, keys=keys,
                                key_names=_key_names(keys), f=f, query=f.query(), next_before=next_before,
                                paged=before is not None, base="/history", models=[p.name for p in web.catalogue()],
                                errors=errors, raw=dict(request.query_params))

    @app.get("/history.csv")
    async def history_csv(request: Request) -> Response:
        viewer = await web.customer(request)
        f, keys, errors = await own_filter(viewer, request)
        if errors:
            raise Refused(400, N_("Enter dates as YYYY-MM-DD."))
        names = {k["id"]: (k["prefix"], k["name"]) for k in keys}
        lines = history.csv_lines(accounts, viewer.account.id, f, await web.money(), names)
        return StreamingResponse(lines, media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="history-{today().isoformat()}.csv"'})

    # -- usage ---------------------------------------------------------------------------------------

    @app.get("/usage")
    async def usage_page(request: Request) -> Response:
        viewer = await web.customer(request)
        _, locale = web.gettext(request), web.locale(request)
        f, errors = history.filter_of(request.query_params, _, locale)
        end = f.end or today()
        start = f.start or end.replace(day=1)
        error = ""
        if start > end:
            error = _("The start of the period must not be after its end.")
        elif (end - start).days > 366:
            error = _("The period may span at most 366 days.")
        if error:
            errors["from"] = error
            start = end.replace(day=1)
        doc = await accounts.usage(viewer.account.id, start, end)
        period = doc["period"]
        by_model, partial = await history.by_model(accounts, viewer.account.id, start, end, await web.money())
        return await web.render(request, "usage.html", viewer, 400 if errors else 200, title=_("Usage"), usage=doc,
                                period=period, start=start, end=end, error=error or " ".join(errors.values()),
                                errors=errors, by_model=by_model, by_model_partial=partial,
                                spend_chart=charts.bar_chart(period["days"], "spend_usd",
                                                             lambda v: money(v, "USD", locale, "cost")),
                                requests_chart=charts.bar_chart(period["days"], "requests",
                                                                lambda v: number(v, locale), integer=True),
                                presets=_presets(today(), _))

    # -- billing -------------------------------------------------------------------------------------

    async def billing_page(request: Request, viewer: Viewer, status: int = 200, error: str = "",
                           amount: str = "", errors: dict[str, str] | None = None) -> Response:
        money = await web.money()
        aid = viewer.account.id
        topups = await web.topups.recent(aid)
        shown = None
        tid = request.query_params.get("topup", "")
        if tid:
            shown = next((t for t in topups if t.id == tid), None)
            if shown is not None and shown.status == "pending":
                # back from the checkout: ask the provider now rather than wait for its webhook
                shown = await web.payments.poll(shown)
                topups = [shown if t.id == shown.id else t for t in topups]
                viewer = Viewer(viewer.session, await accounts.account(aid))
        ledger = [ledger_doc(e, money) for e in await accounts.ledger_entries(aid, 20)]
        return await web.render(request, "billing.html", viewer, status, title=web.t(request, "Billing"),
                                account=account_doc(viewer.account, money), providers=web.payments.available(),
                                topups=[_topup_doc(t, money, web.payments.methods()) for t in topups], shown=shown, ledger=ledger,
                                error=error, amount=amount, rate=money.rate, errors=errors or {},
                                methods=web.payments.methods())

    @app.get("/billing")
    async def billing(request: Request) -> Response:
        web.start_background()
        return await billing_page(request, await web.customer(request))

    @app.post("/billing/topup")
    async def start_topup(request: Request) -> Response:
        viewer = await web.customer(request)
        form = await web.form(request, viewer)
        base = web.settings.web_public_url or str(request.base_url).rstrip("/")
        _ = web.gettext(request)
        try:
            _record, url = await web.payments.start(viewer.account.id, form.get("provider", ""),
                                                    form.get("amount", ""), f"{base}/billing?topup={{topup}}")
        except FieldError as exc:
            text = exc.text(_, web.locale(request))
            return await billing_page(request, viewer, 400, text, form.get("amount", ""), {exc.field: text})
        except PaymentError as exc:
            return await billing_page(request, viewer, 502, _(str(exc)), form.get("amount", ""))
        web.start_background()
        return redirect(url)

    async def own_topup(viewer: Viewer, tid: str) -> Any:
        if not tid.startswith("tu_") or len(tid) > 40:
            raise Refused(404, N_("There is no such payment."))
        try:
            return await web.topups.get(viewer.account.id, tid)
        except NotFoundError:
            raise Refused(404, N_("There is no such payment.")) from None

    @app.post("/billing/topup/{tid}/{action}")
    async def topup_action(request: Request, tid: str, action: str) -> Response:
        """Resume (back to the provider's checkout page) or cancel a pending top-up."""
        viewer = await web.customer(request)
        await web.form(request, viewer)
        record = await own_topup(viewer, tid)
        if action not in ("resume", "cancel"):
            raise Refused(404, N_("There is no such action."))
        record = await web.payments.poll(record)    # it may have been paid or canceled meanwhile
        if record.status != "pending":
            return redirect(f"/billing?topup={record.id}")
        if action == "cancel":
            await web.payments.cancel(record)
            return redirect(f"/billing?topup={record.id}")
        if not record.url:
            raise Refused(409, N_("This payment can no longer be resumed; start a new top-up."))
        return redirect(record.url)

    @app.post("/payments/webhook/{provider}")
    async def payment_webhook(request: Request, provider: str) -> Response:
        """Server to server: no session, no CSRF; the HMAC signature over the raw body is the proof."""
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_WEBHOOK_BYTES:
                return JSONResponse({"error": "too large"}, status_code=413)
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            result = await web.payments.webhook(provider, headers, raw)
        except BadSignature:
            log.warning("payment webhook for %s with a bad signature from %s", provider, client_address(request))
            return JSONResponse({"error": "bad signature"}, status_code=401)
        except WebhookRejected as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except NotFoundError:
            return JSONResponse({"error": "unknown payment"}, status_code=404)
        except (ConnectionError, RedisConnectionError, RedisTimeoutError) as exc:
            # Redis down, a failover under way, or a credit no replica confirmed (gateway.store.replicated):
            # nothing is acknowledged; the provider sends the notification again and the top-up's operation id
            # credits it once
            log.warning("payment webhook for %s not applied (tried again by the provider): %s", provider, exc)
            return JSONResponse({"error": "temporarily unavailable; send the notification again"}, status_code=503,
                                headers={"Retry-After": "5"})
        return JSONResponse(result)

    # -- models & prices -----------------------------------------------------------------------------

    @app.get("/models")
    async def models(request: Request) -> Response:
        viewer = await web.customer(request)
        money = await web.money()
        q = request.query_params.get("q", "").strip().lower()[:100]
        prices = web.catalogue()
        rows = [p.doc(money) for p in prices if not q or q in p.name]
        return await web.render(request, "models.html", viewer, title=web.t(request, "Models & prices"),
                                rows=rows, q=q,
                                total=len(prices), rate=money.rate)


def _key_names(keys: list[dict[str, Any]]) -> dict[str, str]:
    return {k["id"]: (f"{k['name']} · {k['prefix']}" if k["name"] else k["prefix"]) for k in keys}


def _presets(day: date, _: Any) -> list[tuple[str, str, str]]:
    first = day.replace(day=1)
    last_month_end = first - timedelta(days=1)
    return [(_("This month"), first.isoformat(), day.isoformat()),
            (_("Last 7 days"), (day - timedelta(days=6)).isoformat(), day.isoformat()),
            (_("Last 30 days"), (day - timedelta(days=29)).isoformat(), day.isoformat()),
            (_("Last month"), last_month_end.replace(day=1).isoformat(), last_month_end.isoformat())]



def _topup_doc(t: Any, money: Any, methods: dict[str, str]) -> dict[str, Any]:
    return {"id": t.id, "provider": t.provider, "method": methods.get(t.provider, t.provider),
            "amount": t.amount, "currency": t.currency,
            **money.pair("credit", t.nano), "status": t.status, "created_ms": t.created_ms, "paid_ms": t.paid_ms}


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else text

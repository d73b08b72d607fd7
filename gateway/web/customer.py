"""The customer's cabinet: sign up, log in and out, dashboard, keys, history, usage, billing, models."""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from gateway.account_admin import (
    ID_RE,
    account_doc,
    check_limit,
    check_models,
    decimal_of,
    key_doc,
    ledger_doc,
)
from gateway.http.client_address import client_host
from gateway.money import MoneyError, usd_to_nano
from gateway.store.accounts import ConflictError, InvalidInput, NotFoundError
from gateway.web import charts, history
from gateway.web.format import num, usd
from gateway.web.passwords import check_strength
from gateway.web.payments import MAX_WEBHOOK_BYTES, BadSignature, PaymentError, WebhookRejected
from gateway.web.site import Refused, Viewer, Web, redirect, safe_next

log = logging.getLogger("gateway.web")


def client_address(request: Request) -> str:
    """The customer's address: the TCP peer, or the client a trusted reverse proxy names (`client_address`)."""
    return client_host(request.scope)


def today() -> date:
    return datetime.now(UTC).date()


async def own_key(web: Web, viewer: Viewer, kid: str) -> str:
    """The key id if it is this account's; any other key is 'not found', whoever owns it."""
    if not ID_RE.match(kid):
        raise Refused(404, "There is no such key.")
    try:
        owner = await web.accounts.key_owner(kid)
    except NotFoundError:
        raise Refused(404, "There is no such key.") from None
    if owner != viewer.account.id:
        raise Refused(404, "There is no such key.")
    return kid


def parse_key_form(form: dict[str, str]) -> dict[str, Any]:
    """name, monthly limit (USD, blank = none), allowed models (blank = all), rpm, tpm (blank = 0)."""
    name = form.get("name", "").strip()
    if len(name) > 100:
        raise InvalidInput("the name may have at most 100 characters")
    limit_text = form.get("monthly_limit_usd", "").strip()
    try:
        limit = usd_to_nano(decimal_of(limit_text, "monthly limit")) if limit_text else None
    except MoneyError as exc:
        raise InvalidInput(str(exc)) from None
    check_limit("the monthly limit", limit)
    models = check_models(form.get("models", "").replace(",", " ").split())
    counts = {}
    for field in ("rpm", "tpm"):
        text = form.get(field, "").strip() or "0"
        if not text.isdigit() or len(text) > 12:
            raise InvalidInput(f"{field.upper()} must be a whole number (0 or blank: unlimited)")
        counts[field] = int(text)
    return {"name": name, "monthly_limit": limit, "models": models, **counts}


def register(app: FastAPI, web: Web) -> None:
    accounts = web.accounts

    # -- sign up, log in, log out --------------------------------------------------------------------

    @app.get("/login")
    async def login_page(request: Request) -> Response:
        if await web.viewer(request):
            return redirect(safe_next(request.query_params.get("next")))
        return await web.render(request, "login.html", None, title="Log in", email="", error="",
                                next=safe_next(request.query_params.get("next")))

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await web.form(request, None)
        email, password = form.get("email", "").strip().lower()[:320], form.get("password", "")
        target = safe_next(form.get("next"))
        address = client_address(request)

        async def again(status: int, error: str) -> Response:
            return await web.render(request, "login.html", None, status, title="Log in", email=email, error=error,
                                    next=target)

        throttled = await web.throttle.check(email, address)
        if throttled is not None:
            minutes = -(-throttled.retry_after_s // 60)
            return await again(429, f"Too many failed attempts. Try again in {minutes} minute"
                                    f"{'' if minutes == 1 else 's'}.")
        try:
            account = await accounts.account_by_login(email) if email else None
        except NotFoundError:
            account = None
        if not await web.passwords.verify(account.id if account else None, password) or account is None:
            await web.throttle.failed(email, address)
            log.info("failed cabinet login from %s", address)
            return await again(401, "Wrong email or password.")
        if account.status != "ACTIVE":
            return await again(403, "This account is blocked. Please contact support.")
        await web.throttle.succeeded(email, address)
        token = await web.sessions.create(account.id)
        response = redirect(target)
        web.set_cookie(response, web.session_cookie, token, web.settings.web_session_ttl_s, "lax")
        response.delete_cookie(web.csrf_cookie, path="/", secure=web.secure, httponly=True, samesite="strict")
        return response

    @app.get("/signup")
    async def signup_page(request: Request) -> Response:
        if await web.viewer(request):
            return redirect("/")
        return await web.render(request, "signup.html", None, title="Sign up", email="", error="")

    @app.post("/signup")
    async def signup(request: Request) -> Response:
        form = await web.form(request, None)
        email, password = form.get("email", "").strip().lower()[:320], form.get("password", "")
        try:
            check_strength(password)
            if password != form.get("password2", ""):
                raise InvalidInput("the two passwords differ")
            account = await accounts.create_account(email, "customer")
        except (InvalidInput, ConflictError) as exc:
            return await web.render(request, "signup.html", None, 400, title="Sign up", email=email,
                                    error=_sentence(str(exc)))
        await web.passwords.set(account.id, password)
        token = await web.sessions.create(account.id)
        response = redirect("/")
        web.set_cookie(response, web.session_cookie, token, web.settings.web_session_ttl_s, "lax")
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

    # -- dashboard -----------------------------------------------------------------------------------

    @app.get("/")
    async def dashboard(request: Request) -> Response:
        viewer = await web.customer(request)
        aid, money = viewer.account.id, await web.money()
        day = today()
        usage = await accounts.usage(aid, day, day)
        keys = [key_doc(k, money) for k in await accounts.list_keys(aid)]
        recent, _ = await history.page(accounts, aid, history.Filter(), money, limit=5)
        return await web.render(request, "dashboard.html", viewer, title="Dashboard",
                                account=account_doc(viewer.account, money), today=usage["period"],
                                keys=[k for k in keys if k["status"] != "REVOKED"],
                                recent=recent, key_names=_key_names(keys), rate=money.rate)

    # -- keys ----------------------------------------------------------------------------------------

    async def keys_page(request: Request, viewer: Viewer, status: int = 200, **extra: Any) -> Response:
        money = await web.money()
        keys = [key_doc(k, money) for k in await accounts.list_keys(viewer.account.id)]
        context: dict[str, Any] = {"created": None, "error": "", "form": {}, "nonce": secrets.token_urlsafe(16)}
        context.update(extra)
        return await web.render(request, "keys.html", viewer, status, title="API keys", keys=keys, **context)

    @app.get("/keys")
    async def keys(request: Request) -> Response:
        return await keys_page(request, await web.customer(request))

    @app.post("/keys")
    async def create_key(request: Request) -> Response:
        viewer = await web.customer(request)
        form = await web.form(request, viewer)
        try:
            spec = parse_key_form(form)
        except InvalidInput as exc:
            return await keys_page(request, viewer, 400, error=_sentence(str(exc)), form=form)
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
        return await web.render(request, "key.html", viewer, title=f"Key {view.prefix}",
                                key=key_doc(view, await web.money()), error="")

    @app.post("/keys/{kid}")
    async def update_key(request: Request, kid: str) -> Response:
        viewer = await web.customer(request)
        form = await web.form(request, viewer)
        await own_key(web, viewer, kid)
        view = await accounts.key(viewer.account.id, kid)
        try:
            if view.status == "REVOKED":
                raise InvalidInput("a revoked key cannot be changed")
            spec = parse_key_form(form | {"name": view.name})
        except InvalidInput as exc:
            return await web.render(request, "key.html", viewer, 400, title=f"Key {view.prefix}",
                                    key=key_doc(view, await web.money()), error=_sentence(str(exc)))
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

    async def own_filter(viewer: Viewer, request: Request) -> tuple[history.Filter, list[dict[str, Any]]]:
        q = request.query_params
        money = await web.money()
        keys = [key_doc(k, money) for k in await accounts.list_keys(viewer.account.id)]
        key = q.get("key", "")
        if key and key not in {k["id"] for k in keys}:
            raise Refused(404, "There is no such key.")
        return history.Filter(key=key, model=q.get("model", "").strip()[:200],
                              start=history.parse_date(q.get("from")), end=history.parse_date(q.get("to"))), keys

    @app.get("/history")
    async def history_page(request: Request) -> Response:
        viewer = await web.customer(request)
        f, keys = await own_filter(viewer, request)
        before = request.query_params.get("before") or None
        if before is not None and not history.STREAM_ID.fullmatch(before):
            before = None
        rows, next_before = await history.page(accounts, viewer.account.id, f, await web.money(), before)
        return await web.render(request, "history.html", viewer, title="History", rows=rows, keys=keys,
                                key_names=_key_names(keys), f=f, query=f.query(), next_before=next_before,
                                paged=before is not None, base="/history", models=[p.name for p in web.catalogue()])

    @app.get("/history.csv")
    async def history_csv(request: Request) -> Response:
        viewer = await web.customer(request)
        f, keys = await own_filter(viewer, request)
        names = {k["id"]: (k["prefix"], k["name"]) for k in keys}
        lines = history.csv_lines(accounts, viewer.account.id, f, await web.money(), names)
        return StreamingResponse(lines, media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="history-{today().isoformat()}.csv"'})

    # -- usage ---------------------------------------------------------------------------------------

    @app.get("/usage")
    async def usage_page(request: Request) -> Response:
        viewer = await web.customer(request)
        q = request.query_params
        end = history.parse_date(q.get("to")) or today()
        start = history.parse_date(q.get("from")) or end.replace(day=1)
        error = ""
        try:
            doc = await accounts.usage(viewer.account.id, start, end)
        except InvalidInput as exc:
            error = _sentence(str(exc))
            start = end.replace(day=1)
            doc = await accounts.usage(viewer.account.id, start, end)
        period = doc["period"]
        return await web.render(request, "usage.html", viewer, title="Usage", usage=doc, period=period,
                                start=start, end=end, error=error,
                                spend_chart=charts.bar_chart(period["days"], "spend_usd", usd),
                                requests_chart=charts.bar_chart(period["days"], "requests", num, integer=True),
                                presets=_presets(today()))

    # -- billing -------------------------------------------------------------------------------------

    async def billing_page(request: Request, viewer: Viewer, status: int = 200, error: str = "",
                           amount: str = "") -> Response:
        money = await web.money()
        aid = viewer.account.id
        topups = await web.topups.recent(aid)
        shown = None
        tid = request.query_params.get("topup", "")
        if tid:
            shown = next((t for t in topups if t.id == tid), None)
        ledger = [ledger_doc(e, money) for e in await accounts.ledger_entries(aid, 20)]
        return await web.render(request, "billing.html", viewer, status, title="Billing",
                                account=account_doc(viewer.account, money), providers=web.payments.available(),
                                topups=[_topup_doc(t, money) for t in topups], shown=shown, ledger=ledger,
                                error=error, amount=amount, rate=money.rate)

    @app.get("/billing")
    async def billing(request: Request) -> Response:
        return await billing_page(request, await web.customer(request))

    @app.post("/billing/topup")
    async def start_topup(request: Request) -> Response:
        viewer = await web.customer(request)
        form = await web.form(request, viewer)
        base = web.settings.web_public_url or str(request.base_url).rstrip("/")
        try:
            _, url = await web.payments.start(viewer.account.id, form.get("provider", ""), form.get("amount", ""),
                                              f"{base}/billing?topup={{topup}}")
        except (InvalidInput, PaymentError) as exc:
            return await billing_page(request, viewer, 400 if isinstance(exc, InvalidInput) else 502,
                                      _sentence(str(exc)), form.get("amount", ""))
        return redirect(url)

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
        return JSONResponse(result)

    # -- models & prices -----------------------------------------------------------------------------

    @app.get("/models")
    async def models(request: Request) -> Response:
        viewer = await web.customer(request)
        money = await web.money()
        q = request.query_params.get("q", "").strip().lower()[:100]
        prices = web.catalogue()
        rows = [p.doc(money) for p in prices if not q or q in p.name]
        return await web.render(request, "models.html", viewer, title="Models & prices", rows=rows, q=q,
                                total=len(prices), rate=money.rate)


def _key_names(keys: list[dict[str, Any]]) -> dict[str, str]:
    return {k["id"]: (f"{k['name']} · {k['prefix']}" if k["name"] else k["prefix"]) for k in keys}


def _presets(day: date) -> list[tuple[str, str, str]]:
    first = day.replace(day=1)
    last_month_end = first - timedelta(days=1)
    return [("This month", first.isoformat(), day.isoformat()),
            ("Last 7 days", (day - timedelta(days=6)).isoformat(), day.isoformat()),
            ("Last 30 days", (day - timedelta(days=29)).isoformat(), day.isoformat()),
            ("Last month", last_month_end.replace(day=1).isoformat(), last_month_end.isoformat())]


def _topup_doc(t: Any, money: Any) -> dict[str, Any]:
    return {"id": t.id, "provider": t.provider, "amount": t.amount, "currency": t.currency,
            **money.pair("credit", t.nano), "status": t.status, "created_ms": t.created_ms, "paid_ms": t.paid_ms}


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else text

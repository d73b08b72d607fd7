"""The operator console (role admin): accounts and their balance, keys, history and ledger; manual top-up
and correction with a reason; block/unblock an account or a key; the USD→RUB rate; the loaded config."""

from __future__ import annotations

import os
import secrets
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from gateway.account_admin import ID_RE, account_doc, correct, key_doc, ledger_doc, topup
from gateway.config import Config
from gateway.money import MoneyError, parse_rate, usd_to_nano
from gateway.store.accounts import ConflictError, InvalidInput, NotFoundError
from gateway.web import forms, history
from gateway.web.format import money as format_money
from gateway.web.forms import FieldError
from gateway.web.i18n import N_
from gateway.web.site import Refused, Viewer, Web, redirect

PAGE = 50
MAX_USD = Decimal(1_000_000)              # one manual top-up or correction, USD
MAX_RUB = Decimal(100_000_000)            # one manual top-up, RUB
MIN_RATE, MAX_RATE = Decimal("0.0001"), Decimal(100_000)


def summary(config: Config) -> str:
    """The first line `gateway config validate` prints for a config that loaded."""
    return (f"OK: {len(config.models)} models ({len(config.enabled_models)} enabled), {len(config.routes)} "
            f"routes, {len(config.providers)} providers, {len(config.prices)} prices")


def register(app: FastAPI, web: Web) -> None:
    accounts = web.accounts

    def actor(viewer: Viewer) -> str:
        return f"console:{viewer.account.login}"

    async def account_id(aid: str) -> str:
        if not ID_RE.match(aid):
            raise Refused(404, N_("There is no such account."))
        try:
            await accounts.account(aid)
        except NotFoundError:
            raise Refused(404, N_("There is no such account.")) from None
        return aid

    # -- accounts ------------------------------------------------------------------------------------

    @app.get("/console")
    async def accounts_page(request: Request) -> Response:
        viewer = await web.operator(request)
        q = request.query_params.get("q", "").strip()[:200]
        offset = request.query_params.get("offset", "0")
        offset_n = int(offset) if offset.isdigit() else 0
        views, total = await accounts.list_accounts(q, offset_n, PAGE)
        money = await web.money()
        return await web.render(request, "console/accounts.html", viewer, title=web.t(request, "Accounts"),
                                rows=[account_doc(v, money) for v in views], total=total, q=q, offset=offset_n,
                                page=PAGE, rate=money.rate, error="")

    def refusal(request: Request, exc: FieldError) -> dict[str, Any]:
        text = exc.text(web.gettext(request), web.locale(request))
        return {"error": text, "errors": {exc.field: text}}

    async def account_page(request: Request, viewer: Viewer, aid: str, status: int = 200, error: str = "",
                           form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                           confirm: str = "") -> Response:
        money = await web.money()
        view = await accounts.account(aid)
        keys = [key_doc(k, money) for k in await accounts.list_keys(aid)]
        ledger = [ledger_doc(e, money) for e in await accounts.ledger_entries(aid, 50)]
        recent, _ = await history.page(accounts, aid, history.Filter(), money, limit=20)
        return await web.render(request, "console/account.html", viewer, status, title=view.login,
                                account=account_doc(view, money), keys=keys, ledger=ledger, recent=recent,
                                key_names={k["id"]: k["prefix"] for k in keys}, error=error, form=form or {},
                                nonce=secrets.token_urlsafe(16), rate=money.rate, errors=errors or {},
                                confirm=confirm)

    @app.get("/console/accounts/{aid}")
    async def account(request: Request, aid: str) -> Response:
        viewer = await web.operator(request)
        return await account_page(request, viewer, await account_id(aid))

    @app.post("/console/accounts/{aid}/topup")
    async def topup_account(request: Request, aid: str) -> Response:
        viewer = await web.operator(request)
        form = await web.form(request, viewer)
        aid = await account_id(aid)
        currency, amount = form.get("currency", "USD"), form.get("amount", "")
        try:
            if currency not in ("USD", "RUB"):
                raise FieldError("currency", N_("Choose USD or RUB."))
            value = forms.plain_decimal(amount, "amount", low=Decimal("0.01"),
                                        high=MAX_USD if currency == "USD" else MAX_RUB)
            if not form.get("reason", "").strip():
                raise FieldError("reason", N_("A manual top-up needs a reason (it is kept in the ledger)."))
            done = await topup(accounts, aid, usd=value if currency == "USD" else None,
                               rub=value if currency == "RUB" else None, reason=form.get("reason", "")[:500],
                               operation_id=_op(form), actor=actor(viewer))
        except FieldError as exc:
            return await account_page(request, viewer, aid, 400, form=form, **refusal(request, exc))
        except (InvalidInput, MoneyError) as exc:
            return await account_page(request, viewer, aid, 400, _sentence(str(exc)), form)
        return redirect(f"/console/accounts/{aid}?done={'topup-done' if done.applied else 'already-applied'}")

    @app.post("/console/accounts/{aid}/correct")
    async def correct_account(request: Request, aid: str) -> Response:
        viewer = await web.operator(request)
        form = await web.form(request, viewer)
        aid = await account_id(aid)
        _ = web.gettext(request)
        try:
            value = forms.plain_decimal(form.get("usd", ""), "usd", low=-MAX_USD, high=MAX_USD, negative=True)
            if not value:
                raise FieldError("usd", N_("A correction of 0 changes nothing."))
            if not form.get("reason", "").strip():
                raise FieldError("reason", N_("A correction needs a reason (it is kept in the ledger)."))
        except FieldError as exc:
            return await account_page(request, viewer, aid, 400, form=form, **refusal(request, exc))
        view = await accounts.account(aid)
        after = view.remaining + usd_to_nano(value)
        if after < 0 and form.get("confirm") != "1":
            # a correction that leaves the customer owing money: the operator says so explicitly
            money = await web.money()
            text = _("This correction takes the balance below zero, to %(after)s. Tick to confirm.") % {
                "after": format_money(money.usd(after), "USD", web.locale(request))}
            return await account_page(request, viewer, aid, 400, text, form, {"usd": text}, confirm=_(
                "Yes, take the balance below zero"))
        try:
            done = await correct(accounts, aid, value, form.get("reason", "")[:500], operation_id=_op(form),
                                 actor=actor(viewer))
        except (InvalidInput, MoneyError) as exc:
            return await account_page(request, viewer, aid, 400, _sentence(str(exc)), form)
        return redirect(f"/console/accounts/{aid}?done={'correction-done' if done.applied else 'already-applied'}")

    @app.post("/console/accounts/{aid}/{action}")
    async def account_status(request: Request, aid: str, action: str) -> Response:
        viewer = await web.operator(request)
        await web.form(request, viewer)
        aid = await account_id(aid)
        if action not in ("block", "unblock"):
            raise Refused(404, N_("There is no such action."))
        if action == "block" and aid == viewer.account.id:
            return await account_page(request, viewer, aid, 400,
                                      web.t(request, "You cannot block your own account."))
        await accounts.set_account_status(aid, "BLOCKED" if action == "block" else "ACTIVE")
        if action == "block":
            await web.sessions.destroy_all(aid)
        return redirect(f"/console/accounts/{aid}?done=account-{action}ed")

    @app.post("/console/keys/{kid}/{action}")
    async def key_status(request: Request, kid: str, action: str) -> Response:
        viewer = await web.operator(request)
        await web.form(request, viewer)
        statuses = {"block": "BLOCKED", "unblock": "ACTIVE", "revoke": "REVOKED"}
        if action not in statuses or not ID_RE.match(kid):
            raise Refused(404, N_("There is no such action."))
        try:
            aid = await accounts.key_owner(kid)
            await accounts.set_key_status(kid, statuses[action])
        except NotFoundError:
            raise Refused(404, N_("There is no such key.")) from None
        except ConflictError as exc:
            raise Refused(409, _sentence(str(exc))) from None
        return redirect(f"/console/accounts/{aid}?done=key-{'revoked' if action == 'revoke' else action + 'ed'}")

    # -- history of one account ----------------------------------------------------------------------

    def account_filter(request: Request) -> tuple[history.Filter, dict[str, str]]:
        q = request.query_params
        f, errors = history.filter_of(q, web.gettext(request), web.locale(request))
        return history.Filter(key=q.get("key", "")[:64], model=f.model, start=f.start, end=f.end), errors

    @app.get("/console/accounts/{aid}/history")
    async def account_history(request: Request, aid: str) -> Response:
        viewer = await web.operator(request)
        aid = await account_id(aid)
        money = await web.money()
        keys = [key_doc(k, money) for k in await accounts.list_keys(aid)]
        f, errors = account_filter(request)
        before = request.query_params.get("before") or None
        if before is not None and not history.STREAM_ID.fullmatch(before):
            before = None
        rows, next_before = await history.page(accounts, aid, f, money, before)
        view = await accounts.account(aid)
        return await web.render(request, "history.html", viewer, 400 if errors else 200,
                                title=web.t(request, "History of %(login)s") % {"login": view.login},
                                rows=rows, keys=keys, key_names={k["id"]: k["prefix"] for k in keys}, f=f,
                                query=f.query(), next_before=next_before, paged=before is not None,
                                base=f"/console/accounts/{aid}/history", models=[], errors=errors,
                                raw=dict(request.query_params))

    @app.get("/console/accounts/{aid}/history.csv")
    async def account_history_csv(request: Request, aid: str) -> Response:
        await web.operator(request)
        aid = await account_id(aid)
        money = await web.money()
        names = {k.id: (k.prefix, k.name) for k in await accounts.list_keys(aid)}
        f, errors = account_filter(request)
        if errors:
            raise Refused(400, N_("Enter dates as YYYY-MM-DD."))
        lines = history.csv_lines(accounts, aid, f, money, names)
        return StreamingResponse(lines, media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="history-{aid}.csv"'})

    # -- the rate ------------------------------------------------------------------------------------

    @app.post("/console/fx")
    async def set_rate(request: Request) -> Response:
        viewer = await web.operator(request)
        form = await web.form(request, viewer)
        try:
            rate = forms.plain_decimal(form.get("usd_rub", ""), "usd_rub", low=MIN_RATE, high=MAX_RATE, places=6)
            await accounts.set_usd_rub(parse_rate(rate))
        except (FieldError, InvalidInput, MoneyError) as exc:
            money = await web.money()
            views, total = await accounts.list_accounts("", 0, PAGE)
            shown = refusal(request, exc) if isinstance(exc, FieldError) else {"error": _sentence(str(exc)),
                                                                                "errors": {"usd_rub": " "}}
            return await web.render(request, "console/accounts.html", viewer, 400,
                                    title=web.t(request, "Accounts"),
                                    rows=[account_doc(v, money) for v in views], total=total, q="", offset=0,
                                    page=PAGE, rate=money.rate, form=form, **shown)
        return redirect("/console?done=rate-set")

    # -- the loaded config, read only ----------------------------------------------------------------

    @app.get("/console/config")
    async def config_page(request: Request) -> Response:
        """The config in force and the outcome of the last load or reload (recorded by gateway.reload): the
        files are not read again here — `gateway config validate` does that, `gateway reload` applies them."""
        viewer = await web.operator(request)
        config = web.config
        status = await web.config_status() if web.config_status is not None else {}
        money = await web.money()
        s = config.settings
        settings = [("Config root", config.root), ("Upstream timeout", f"{s.timeout_ms} ms"),
                    ("Streaming", "on" if s.streaming else "off"), ("Redis prefix", s.redis_prefix),
                    ("Token cache", f"{s.token_cache_ms} ms"), ("Default USD→RUB rate", str(s.usd_rub_default)),
                    ("Current USD→RUB rate", str(money.rate)), ("Session time out", f"{s.web_session_ttl_s} s"),
                    ("Secure cookies", "on" if s.web_cookie_secure else "off"),
                    ("Trusted proxies", f"{', '.join(s.forwarded_allow_ips) or 'none'} ({s.forwarded_header})"),
                    ("Admin API", "enabled" if s.admin_token else "disabled")]
        providers = [{"name": p.name, "wire": p.wire, "base_url": p.base_url,
                      "configured": p.configured, "timeout_ms": p.timeout_ms, "source": p.source}
                     for p in config.providers.values()]
        payments = [{"name": p.name, "kind": p.kind, "title": p.title, "api_url": p.api_url,
                     "currency": p.currency, "limits": f"{p.min_amount}–{p.max_amount}", "configured": p.configured}
                    for p in config.payments.values()]
        raw_prices = {name: p for name, p in config.prices.items()}
        models = sorted(config.models.values(), key=lambda m: (not m.enabled, m.name))
        return await web.render(request, "console/config.html", viewer, title="Configuration", ok=True,
                                report=[summary(config)], cfg=status, version=config.version,
                                settings=settings, routes=config.routes, providers=providers,
                                payments=payments, models=models, enabled=len(config.enabled_models),
                                prices=[p.doc(money) for p in web.catalogue()],
                                raw_prices=raw_prices, files=config.files, env_root=os.environ.get("GATEWAY_ROOT", ""))


def _op(form: dict[str, str]) -> str:
    """The form's one-time token as the operation id: a re-sent form is applied once."""
    nonce = form.get("nonce", "")
    return f"console:{nonce}" if nonce and len(nonce) <= 64 else ""


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else text


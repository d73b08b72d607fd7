"""The operator console (role admin): accounts and their balance, keys, history and ledger; manual top-up
and correction with a reason; block/unblock an account or a key; the USD→RUB rate; the loaded config."""

from __future__ import annotations

import os
import secrets

from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from gateway.account_admin import ID_RE, account_doc, correct, decimal_of, key_doc, ledger_doc, topup
from gateway.config import Config
from gateway.money import MoneyError, parse_rate
from gateway.store.accounts import ConflictError, InvalidInput, NotFoundError
from gateway.web import history
from gateway.web.site import Refused, Viewer, Web, redirect

PAGE = 50


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
            raise Refused(404, "There is no such account.")
        try:
            await accounts.account(aid)
        except NotFoundError:
            raise Refused(404, "There is no such account.") from None
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
        return await web.render(request, "console/accounts.html", viewer, title="Accounts",
                                rows=[account_doc(v, money) for v in views], total=total, q=q, offset=offset_n,
                                page=PAGE, rate=money.rate, error="")

    async def account_page(request: Request, viewer: Viewer, aid: str, status: int = 200, error: str = "",
                           form: dict[str, str] | None = None) -> Response:
        money = await web.money()
        view = await accounts.account(aid)
        keys = [key_doc(k, money) for k in await accounts.list_keys(aid)]
        ledger = [ledger_doc(e, money) for e in await accounts.ledger_entries(aid, 50)]
        recent, _ = await history.page(accounts, aid, history.Filter(), money, limit=20)
        return await web.render(request, "console/account.html", viewer, status, title=view.login,
                                account=account_doc(view, money), keys=keys, ledger=ledger, recent=recent,
                                key_names={k["id"]: k["prefix"] for k in keys}, error=error, form=form or {},
                                nonce=secrets.token_urlsafe(16), rate=money.rate)

    @app.get("/console/accounts/{aid}")
    async def account(request: Request, aid: str) -> Response:
        viewer = await web.operator(request)
        return await account_page(request, viewer, await account_id(aid))

    @app.post("/console/accounts/{aid}/topup")
    async def topup_account(request: Request, aid: str) -> Response:
        viewer = await web.operator(request)
        form = await web.form(request, viewer)
        aid = await account_id(aid)
        currency, amount = form.get("currency", "USD"), form.get("amount", "").strip()
        try:
            if not form.get("reason", "").strip():
                raise InvalidInput("a manual top-up needs a reason (it is kept in the ledger)")
            value = decimal_of(amount, "the amount")
            done = await topup(accounts, aid, usd=value if currency == "USD" else None,
                               rub=value if currency == "RUB" else None, reason=form.get("reason", "")[:500],
                               operation_id=_op(form), actor=actor(viewer))
        except (InvalidInput, MoneyError) as exc:
            return await account_page(request, viewer, aid, 400, _sentence(str(exc)), form)
        return redirect(f"/console/accounts/{aid}?done={'topup-done' if done.applied else 'already-applied'}")

    @app.post("/console/accounts/{aid}/correct")
    async def correct_account(request: Request, aid: str) -> Response:
        viewer = await web.operator(request)
        form = await web.form(request, viewer)
        aid = await account_id(aid)
        try:
            value = decimal_of(form.get("usd", "").strip().replace("−", "-"), "the amount")
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
            raise Refused(404, "There is no such action.")
        if action == "block" and aid == viewer.account.id:
            return await account_page(request, viewer, aid, 400, "You cannot block your own account.")
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
            raise Refused(404, "There is no such action.")
        try:
            aid = await accounts.key_owner(kid)
            await accounts.set_key_status(kid, statuses[action])
        except NotFoundError:
            raise Refused(404, "There is no such key.") from None
        except ConflictError as exc:
            raise Refused(409, _sentence(str(exc))) from None
        return redirect(f"/console/accounts/{aid}?done=key-{'revoked' if action == 'revoke' else action + 'ed'}")

    # -- history of one account ----------------------------------------------------------------------

    def account_filter(request: Request) -> history.Filter:
        q = request.query_params
        return history.Filter(key=q.get("key", "")[:64], model=q.get("model", "").strip()[:200],
                              start=history.parse_date(q.get("from")), end=history.parse_date(q.get("to")))

    @app.get("/console/accounts/{aid}/history")
    async def account_history(request: Request, aid: str) -> Response:
        viewer = await web.operator(request)
        aid = await account_id(aid)
        money = await web.money()
        keys = [key_doc(k, money) for k in await accounts.list_keys(aid)]
        f = account_filter(request)
        before = request.query_params.get("before") or None
        if before is not None and not history.STREAM_ID.fullmatch(before):
            before = None
        rows, next_before = await history.page(accounts, aid, f, money, before)
        view = await accounts.account(aid)
        return await web.render(request, "history.html", viewer, title=f"History of {view.login}", rows=rows,
                                keys=keys, key_names={k["id"]: k["prefix"] for k in keys}, f=f, query=f.query(),
                                next_before=next_before, paged=before is not None,
                                base=f"/console/accounts/{aid}/history", models=[])

    @app.get("/console/accounts/{aid}/history.csv")
    async def account_history_csv(request: Request, aid: str) -> Response:
        await web.operator(request)
        aid = await account_id(aid)
        money = await web.money()
        names = {k.id: (k.prefix, k.name) for k in await accounts.list_keys(aid)}
        lines = history.csv_lines(accounts, aid, account_filter(request), money, names)
        return StreamingResponse(lines, media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": f'attachment; filename="history-{aid}.csv"'})

    # -- the rate ------------------------------------------------------------------------------------

    @app.post("/console/fx")
    async def set_rate(request: Request) -> Response:
        viewer = await web.operator(request)
        form = await web.form(request, viewer)
        try:
            await accounts.set_usd_rub(parse_rate(decimal_of(form.get("usd_rub", "").strip(), "the rate")))
        except (InvalidInput, MoneyError) as exc:
            money = await web.money()
            views, total = await accounts.list_accounts("", 0, PAGE)
            return await web.render(request, "console/accounts.html", viewer, 400, title="Accounts",
                                    rows=[account_doc(v, money) for v in views], total=total, q="", offset=0,
                                    page=PAGE, rate=money.rate, error=_sentence(str(exc)))
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


"""The cabinet's security: sessions on every page and form, CSRF, cookie flags, login throttling, one
account never reaching another's keys or history, secrets shown once and nowhere else, the CLI password."""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.store.accounts import TOKEN_RE
from gateway.web.passwords import hash_password, verify_password
from tests.support import REPO
from tests.support.gateway_server import GatewayServer
from tests.support.web import (
    PAGES,
    PASSWORD,
    Cabinet,
    Stack,
    create_key,
    make_admin,
    new_email,
    redis_url,
    web_stack,
)

MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def stack(fakes: Any) -> Iterator[Stack]:
    with web_stack(fakes) as s:
        yield s


@pytest.fixture()
def cabinet(stack: Stack) -> Iterator[Cabinet]:
    with Cabinet(stack.base_url) as c:
        assert c.signup().status_code == 303
        yield c



def test_every_page_and_form_needs_a_session(stack: Stack, cabinet: Cabinet) -> None:
    kid, secret = create_key(cabinet)
    with httpx.Client(base_url=stack.base_url, follow_redirects=False) as anon:
        for path in PAGES + (f"/keys/{kid}", f"/console/accounts/{cabinet.account_id}"):
            resp = anon.get(path)
            assert resp.status_code == 303, path
            assert resp.headers["location"].startswith("/login"), path
        forms = ["/keys", f"/keys/{kid}/revoke", f"/keys/{kid}", "/billing/topup", "/logout", "/console/fx",
                 f"/console/accounts/{cabinet.account_id}/topup", f"/console/keys/{kid}/revoke"]
        for path in forms:
            resp = anon.post(path, data={"csrf": cabinet.token, "amount": "1000", "usd_rub": "1"})
            assert resp.status_code == 303 and resp.headers["location"].startswith("/login"), path
        # a stolen CSRF token without the session cookie does nothing
        assert "badge-active" in cabinet.get("/keys").text
        assert httpx.get(stack.base_url + "/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    assert 'id="payments"' not in cabinet.get("/billing").text  # no top-up was started
    assert "1 USD = 95 RUB" in cabinet.get("/").text


def test_session_cookie_flags_and_login_logout(stack: Stack) -> None:
    email = new_email()
    with Cabinet(stack.base_url) as c:
        first = c.get("/login")
        pre = first.headers["set-cookie"]
        assert "bt_csrf=" in pre and "HttpOnly" in pre and "SameSite=strict" in pre
        resp = c.signup(email)      # "check your mail", then the login: its answer sets the session
        cookie = next(v for k, v in resp.headers.multi_items() if k == "set-cookie" and v.startswith("bt_session="))
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie and "Max-Age=28800" in cookie
        assert "Secure" not in cookie  # this server runs with GATEWAY_COOKIE_SECURE=false (plain http on loopback)
        session = c.http.cookies["bt_session"]
        assert c.get("/").status_code == 200
        resp = c.post("/logout")
        assert resp.status_code == 303 and resp.headers["location"] == "/login?done=logged-out"
    # the old cookie is dead on the server, not just deleted in the browser
    resp = httpx.get(stack.base_url + "/", cookies={"bt_session": session}, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/login"
    with Cabinet(stack.base_url) as c:
        assert c.login(email).status_code == 303
        assert c.get("/login").headers["location"] == "/"  # already logged in
    with Cabinet(stack.base_url) as c:
        resp = c.login(email, "wrong password")
        assert resp.status_code == 401 and "Wrong email or password." in resp.text
        resp = c.login("nobody-" + email)
        assert resp.status_code == 401 and "Wrong email or password." in resp.text


def test_secure_cookies_by_default(fakes: Any, stack: Stack) -> None:
    """Without GATEWAY_COOKIE_SECURE=false the cookies are Secure and __Host- prefixed."""
    env = {k: v for k, v in stack.env.items() if k != "GATEWAY_COOKIE_SECURE"}
    with GatewayServer(REPO, env) as gw:
        page = httpx.get(gw.base_url + "/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert page.headers["set-cookie"].startswith("__Host-bt_csrf=")
        assert "Secure" in page.headers["set-cookie"]
        email = new_email()
        resp = httpx.post(gw.base_url + "/signup", cookies={"__Host-bt_csrf": token},
                          data={"csrf": token, "email": email, "password": PASSWORD, "password2": PASSWORD})
        assert resp.status_code == 303 and resp.headers["location"] == "/signup/sent"
        resp = httpx.post(gw.base_url + "/login", cookies={"__Host-bt_csrf": token},
                          data={"csrf": token, "email": email, "password": PASSWORD})
        assert resp.status_code == 303
        cookie = next(v for k, v in resp.headers.multi_items() if k == "set-cookie" and "bt_session=" in v)
        assert cookie.startswith("__Host-bt_session=")
        for flag in ("Secure", "HttpOnly", "SameSite=lax", "Path=/"):
            assert flag in cookie


def test_security_headers(stack: Stack, cabinet: Cabinet) -> None:
    for path in ("/", "/login", "/keys"):
        resp = cabinet.get(path)
        assert resp.headers["cache-control"] == "no-store"
        assert resp.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
        assert "script-src 'self'" in resp.headers["content-security-policy"]
        assert resp.headers["x-content-type-options"] == "nosniff"
    assert cabinet.get("/static/style.css").status_code == 200


def test_csrf_token_required_on_every_form(stack: Stack, cabinet: Cabinet) -> None:
    kid, _ = create_key(cabinet)
    other = Cabinet(stack.base_url)
    assert other.signup().status_code == 303
    for bad in ("", "x" * 43, other.token):
        resp = cabinet.post(f"/keys/{kid}/revoke", csrf=bad)
        assert resp.status_code == 403 and "expired or did not come from this site" in resp.text
        resp = cabinet.post("/keys", {"name": "nope", "nonce": "n" + bad[:10]}, csrf=bad)
        assert resp.status_code == 403
        resp = cabinet.post("/logout", csrf=bad)
        assert resp.status_code == 403
    assert "badge-active" in cabinet.get("/keys").text
    assert cabinet.get("/keys").text.count("data-key-id=") == 1
    # a form posted from another site is refused even with the right token
    resp = cabinet.post(f"/keys/{kid}/revoke", headers={"Origin": "https://evil.example"})
    assert resp.status_code == 403 and "another site" in resp.text
    assert "badge-revoked" not in cabinet.get("/keys").text
    # JSON instead of the form is refused
    resp = cabinet.http.post(f"/keys/{kid}/revoke", json={"csrf": cabinet.token})
    assert resp.status_code == 400
    # before login the CSRF token is a double-submit cookie: the form's token must match it
    with Cabinet(stack.base_url) as anon:
        token = anon.csrf_of("/login")
        resp = anon.http.post("/login", data={"csrf": token + "x", "email": "a@b.c", "password": PASSWORD})
        assert resp.status_code == 403
        anon.http.cookies.clear()
        resp = anon.http.post("/signup", data={"csrf": token, "email": new_email(), "password": PASSWORD,
                                               "password2": PASSWORD})
        assert resp.status_code == 403
    other.close()


def test_login_throttling(stack: Stack) -> None:
    email = new_email()
    with Cabinet(stack.base_url) as c:
        assert c.signup(email).status_code == 303
    with Cabinet(stack.base_url) as c:
        for _ in range(5):
            assert c.login(email, "not the password").status_code == 401
        resp = c.login(email)  # the right password, too late
        assert resp.status_code == 429 and "Too many failed attempts. Try again in 15 minutes" in resp.text
        assert c.get("/").status_code == 303
    with Cabinet(stack.base_url) as c:  # another email from the same address is not locked out by this one
        other = new_email()
        assert c.signup(other).status_code == 303
    with Cabinet(stack.base_url) as c:
        assert c.login(other).status_code == 303


async def test_login_throttle_per_address() -> None:
    """Failures count per (email, address) pair, 4 × max per address, 20 × max per email from anywhere."""
    import redis.asyncio as aioredis

    from gateway.store.keys import KeySpace
    from gateway.web.sessions import LoginThrottle

    client = aioredis.Redis.from_url(redis_url())
    prefix = "tthr" + os.urandom(3).hex()
    t = LoginThrottle(client, KeySpace(prefix), max_failures=3, window_s=60)
    try:
        for i in range(11):
            await t.failed(f"user{i % 4}@x.io", "10.9.9.9")   # ≤ 3 per email: no email is locked yet...
        assert await t.check("fresh@x.io", "10.9.9.9") is None
        await t.failed("fresh@x.io", "10.9.9.9")                # ...the 12th failure locks the address
        locked = await t.check("fresh@x.io", "10.9.9.9")
        assert locked is not None and 0 < locked.retry_after_s <= 60
        assert await t.check("fresh@x.io", "10.1.1.1") is None
        for _ in range(3):
            await t.failed("only@x.io", "10.1.1.1")
        assert await t.check("only@x.io", "10.1.1.1") is not None
        # the owner elsewhere is not locked out by someone guessing from 10.1.1.1
        assert await t.check("only@x.io", "10.2.2.2") is None
        await t.succeeded("only@x.io", "10.1.1.1")
        assert await t.check("only@x.io", "10.1.1.1") is None
        # guesses spread over many addresses still meet a ceiling per email, which a reset clears
        for i in range(LoginThrottle.EMAIL_CEILING * 3):
            await t.failed("spread@x.io", f"10.3.{i // 250}.{i % 250}")
        assert await t.check("spread@x.io", "10.4.4.4") is not None
        await t.reset("spread@x.io", "10.4.4.4")
        assert await t.check("spread@x.io", "10.4.4.4") is None
    finally:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def test_passwords_are_slow_salted_hashes(stack: Stack, cabinet: Cabinet) -> None:
    stored = stack.redis().get(f"{stack.prefix}:{{a:{cabinet.account_id}}}:pw").decode()
    algo, n, r, p, _salt, _digest = stored.split("$")
    assert (algo, n, r, p) == ("scrypt", "16384", "8", "1") and PASSWORD not in stored
    assert verify_password(PASSWORD, stored) and not verify_password(PASSWORD + "x", stored)
    assert hash_password(PASSWORD) != hash_password(PASSWORD)  # salted
    with Cabinet(stack.base_url) as c:
        resp = c.signup(password="short")
        assert resp.status_code == 400 and "at least 8 characters" in resp.text
        token = c.csrf_of("/signup")
        resp = c.http.post("/signup", data={"csrf": token, "email": new_email(), "password": PASSWORD,
                                            "password2": PASSWORD + "!"})
        assert resp.status_code == 400 and "The two passwords differ." in resp.text


def test_one_account_never_reaches_another(stack: Stack) -> None:
    a, b = Cabinet(stack.base_url), Cabinet(stack.base_url)
    assert a.signup().status_code == 303 and b.signup().status_code == 303
    kid, secret = create_key(a, "a-key")
    prefix = secret.split("_")[1]
    openai.OpenAI(base_url=stack.base_url + "/v1", api_key=secret, max_retries=0)  # (a real key of A)
    for path in (f"/keys/{kid}", f"/history?key={kid}", f"/history.csv?key={kid}"):
        resp = b.get(path)
        assert resp.status_code == 404, path
        assert prefix not in resp.text
    for path, data in ((f"/keys/{kid}/revoke", {}), (f"/keys/{kid}", {"monthly_limit_usd": "0.01"})):
        resp = b.post(path, data)
        assert resp.status_code == 404, path
    for path in ("/", "/keys", "/history", "/history.csv", "/usage", "/billing"):
        page = b.get(path).text
        assert kid not in page and prefix not in page and a.account_id not in page, path
    # the operator console is not there for a customer, by id or otherwise
    for path in ("/console", f"/console/accounts/{a.account_id}", f"/console/accounts/{a.account_id}/history",
                 "/console/config"):
        assert b.get(path).status_code == 404, path
    resp = b.post(f"/console/accounts/{a.account_id}/topup", {"amount": "100", "currency": "USD"})
    assert resp.status_code == 404
    resp = b.post(f"/console/accounts/{b.account_id}/topup", {"amount": "100", "currency": "USD"})
    assert resp.status_code == 404
    assert b.post(f"/console/keys/{kid}/revoke").status_code == 404
    assert b.post("/console/fx", {"usd_rub": "1"}).status_code == 404
    page = a.get("/keys").text
    assert "badge-active" in page and "badge-revoked" not in page
    assert "$0.00" in a.get("/").text and "$0.00" in b.get("/").text
    assert "1 USD = 95 RUB" in b.get("/").text
    a.close()
    b.close()


def test_secret_shown_once_and_never_stored(stack: Stack, cabinet: Cabinet) -> None:
    page = cabinet.get("/keys").text
    nonce = re.search(r'name="nonce" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    resp = cabinet.post("/keys", {"name": "prod", "nonce": nonce, "monthly_limit_usd": "5", "models": "gpt-4o-mini, claude-*",
                                  "rpm": "60", "tpm": "100000"})
    assert resp.status_code == 201 and resp.headers["cache-control"] == "no-store"
    secret = re.search(r'value="(bt_[^"]+)"', resp.text).group(1)  # type: ignore[union-attr]
    assert TOKEN_RE.match(secret.encode())
    assert resp.text.count(secret) == 1
    # gone on every later page, and a re-sent form (a reload) makes no second key and shows nothing
    for path in ("/keys", "/", "/history", "/billing"):
        assert secret not in cabinet.get(path).text
    again = cabinet.post("/keys", {"name": "prod", "nonce": nonce})
    assert again.status_code == 303 and again.headers["location"] == "/keys?done=key-reposted"
    page = cabinet.get(again.headers["location"]).text
    assert secret not in page and page.count("data-key-id=") == 1 and "cannot be shown again" in page
    assert "$5.00" in page and "gpt-4o-mini, claude-*" in page and "60 / 100,000" in page
    # Redis holds only the hash
    r = stack.redis()
    for key in r.scan_iter(match=f"{stack.prefix}:*", count=1000):
        kind = r.type(key).decode()
        blob = repr(r.dump(key)) if kind != "none" else ""
        assert secret not in key.decode() and secret not in blob and secret.split("_")[2] not in blob


def test_invalid_key_forms_are_explained(cabinet: Cabinet) -> None:
    nonce = re.search(r'name="nonce" value="([^"]+)"', cabinet.get("/keys").text).group(1)  # type: ignore[union-attr]
    for fields, message in (({"monthly_limit_usd": "ten"}, "Enter a plain number such as 12.50"),
                            ({"monthly_limit_usd": "-1"}, "Enter a plain number such as 12.50"),
                            ({"monthly_limit_usd": "1e3"}, "Enter a plain number such as 12.50"),
                            ({"monthly_limit_usd": "1000000000"}, "Enter an amount from 0 to 1,000,000."),
                            ({"models": "gpt 4o!"}, "“gpt” matches no model we serve"),
                            ({"models": "nosuchmodel-*"}, "“nosuchmodel-*” matches no model we serve"),
                            ({"rpm": "-5"}, "Enter a whole number from 0 to 1,000,000")):
        resp = cabinet.post("/keys", {"name": "x", "nonce": nonce, **fields})
        assert resp.status_code == 400 and message in resp.text, (fields, resp.text[-2000:])
    assert "data-key-id=" not in cabinet.get("/keys").text


def test_sessions_survive_a_restart(stack: Stack, cabinet: Cabinet) -> None:
    with GatewayServer(REPO, stack.env) as again:
        resp = httpx.get(again.base_url + "/", cookies=dict(cabinet.http.cookies), follow_redirects=False)
        assert resp.status_code == 200 and cabinet.account_id in resp.text


def test_blocked_account_is_logged_out(stack: Stack) -> None:
    email = new_email()
    customer = Cabinet(stack.base_url)
    assert customer.signup(email).status_code == 303
    admin = Cabinet(stack.base_url)
    assert admin.login(make_admin(stack)).status_code == 303
    resp = admin.post(f"/console/accounts/{customer.account_id}/block")
    assert resp.status_code == 303
    assert customer.get("/").status_code == 303
    with Cabinet(stack.base_url) as again:
        resp = again.login(email)
        assert resp.status_code == 403 and "blocked" in resp.text
    admin.post(f"/console/accounts/{customer.account_id}/unblock")
    with Cabinet(stack.base_url) as again:
        assert again.login(email).status_code == 303
    customer.close()
    admin.close()


def test_no_secret_in_logs_pages_or_history(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    email = new_email()
    with Cabinet(stack.base_url) as c:
        assert c.signup(email).status_code == 303
        c.post("/logout")
        assert c.login(email, "a wrong password").status_code == 401
        assert c.login(email).status_code == 303
        _kid, secret = create_key(c, "logged")
        client = openai.OpenAI(base_url=stack.base_url + "/v1", api_key=secret, max_retries=0)
        with pytest.raises(openai.PermissionDeniedError):   # no balance yet: refused, and recorded
            client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        resp = c.post("/billing/topup", {"provider": "yookassa", "amount": "950"})
        assert resp.status_code == 303
        pay = httpx.post(resp.headers["location"] + "/pay", follow_redirects=False)
        assert pay.status_code == 303
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        pages = [c.get(p).text for p in ("/", "/keys", "/history", "/history.csv", "/usage", "/billing", "/models")]
    with Cabinet(stack.base_url) as admin:
        assert admin.login(make_admin(stack)).status_code == 303
        pages += [admin.get(p).text for p in ("/console", f"/console/accounts/{c.account_id}",
                                              f"/console/accounts/{c.account_id}/history", "/console/config",
                                              f"/console/accounts/{c.account_id}/history.csv")]
    secrets_ = (secret, secret.split("_")[2], PASSWORD, "a wrong password", stack.payments.webhook_secret,
                stack.payments.secret_key)
    for text in pages:
        for s in secrets_:
            assert s not in text
    assert "gpt-4o-mini" in pages[2]
    for s in secrets_:
        assert s not in caplog.text


def test_cli_set_password_reads_stdin_never_argv(stack: Stack, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """`gateway accounts create --admin` then `gateway accounts set-password ID` (in-process, one config load)."""
    import gateway.cli_accounts
    from gateway.cli import main
    from gateway.config import load_config

    for name, value in stack.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GATEWAY_ROOT", str(REPO))
    config = load_config(REPO)
    monkeypatch.setattr(gateway.cli_accounts, "_load_config", lambda root: config)

    def cli(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        try:
            rc = main(list(argv))
        except SystemExit as exc:
            rc = int(exc.code or 0)
        out, err = capsys.readouterr()
        return rc, out, err

    email = new_email()
    rc, out, err = cli("accounts", "create", "--login", email, "--admin", "--json")
    assert rc == 0, err
    aid = re.search(r'"id": "(acct_[0-9a-f]+)"', out).group(1)  # type: ignore[union-attr]
    rc, _, err = cli("accounts", "set-password", aid, "--password", "x")
    assert rc == 2 and "unrecognized arguments" in err
    rc, _, err = cli("accounts", "set-password", aid, stdin="short\n")
    assert rc == 1 and "at least 8 characters" in err
    rc, _, err = cli("accounts", "set-password", aid, stdin="")
    assert rc == 1 and "no password given" in err
    rc, out, err = cli("accounts", "set-password", aid, stdin="operator pass 1\n")
    assert rc == 0, err
    assert f"password set for {aid} ({email}, admin)" in out and "operator pass 1" not in out + err
    with Cabinet(stack.base_url) as admin:
        assert admin.login(email, "operator pass 1").status_code == 303
        assert admin.get("/console").status_code == 200
        # a new password ends every session of the account
        rc, out, err = cli("accounts", "set-password", aid, "--json", stdin="operator pass 2\n")
        assert rc == 0 and '"sessions_ended": 1' in out, err
        assert admin.get("/console").status_code == 303
    with Cabinet(stack.base_url) as admin:
        assert admin.login(email, "operator pass 1").status_code == 401
        assert admin.login(email, "operator pass 2").status_code == 303


def test_login_returns_only_to_this_site(stack: Stack) -> None:
    email = new_email()
    with Cabinet(stack.base_url) as c:
        assert c.signup(email).status_code == 303
    resp = httpx.get(stack.base_url + "/history?key=key_1&from=2026-01-01", follow_redirects=False)
    assert resp.headers["location"] == "/login?next=/history%3Fkey%3Dkey_1%26from%3D2026-01-01"
    for target, expected in (("/history?key=key_1&from=2026-01-01", "/history?key=key_1&from=2026-01-01"),
                             ("//evil.example/", "/"), ("https://evil.example/", "/"), ("/\\evil.example", "/"),
                             ("/\t/evil.example", "/"), ("", "/")):
        with Cabinet(stack.base_url) as c:
            page = c.get("/login", params={"next": target}).text
            token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            shown = re.search(r'name="next" value="([^"]*)"', page).group(1)  # type: ignore[union-attr]
            assert shown.replace("&amp;", "&") == expected
            resp = c.http.post("/login", data={"csrf": token, "email": email, "password": PASSWORD, "next": target})
            assert resp.status_code == 303 and resp.headers["location"] == expected, target

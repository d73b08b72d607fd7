"""The cabinet's e-mail through a real SMTP exchange with a server on loopback (aiosmtpd): address
confirmation before the first key, password reset by a one-time expiring link, password change, no account
enumeration by sign-up or reset, sign-ups limited per client address, the login lockout per (email,
address) pair, and the alerts (e-mail and a signed webhook, once per crossing)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import httpx
import openai
import pytest

from tests.support.smtp import MailBox
from tests.support.web import PASSWORD, Cabinet, Stack, create_key, make_admin, new_email, web_stack


@pytest.fixture(scope="module")
def mailbox() -> Iterator[MailBox]:
    with MailBox() as box:
        yield box


@pytest.fixture(scope="module")
def stack(fakes: Any, mailbox: MailBox) -> Iterator[Stack]:
    with web_stack(fakes, **mailbox.env(), GATEWAY_SIGNUPS_PER_HOUR="6", GATEWAY_RESET_TTL_S="2",
                   GATEWAY_ALERTS_ALLOW_LOOPBACK="true") as s:
        yield s


def from_address(c: Cabinet, address: str) -> None:
    """Requests as if from `address` (the loopback peer is a trusted proxy, so X-Forwarded-For counts)."""
    c.http.headers["X-Forwarded-For"] = address


def signup(stack: Stack, email: str, address: str) -> httpx.Response:
    with Cabinet(stack.base_url) as c:
        from_address(c, address)
        token = c.csrf_of("/signup")
        return c.http.post("/signup", data={"csrf": token, "email": email, "password": PASSWORD,
                                            "password2": PASSWORD})


def test_confirmation_before_the_first_key(stack: Stack, mailbox: MailBox) -> None:
    email = new_email()
    resp = signup(stack, email, "10.20.0.1")
    assert resp.status_code == 303 and resp.headers["location"] == "/signup/sent"
    letter = mailbox.wait(email)[0]
    link = letter.link("/verify")
    assert "Confirm your email address" in letter.subject
    with Cabinet(stack.base_url) as c:
        assert c.login(email).status_code == 303          # the account can log in at once...
        page = c.get("/keys").text
        assert 'id="unverified"' in page
        nonce = re.search(r'name="nonce" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        refused = c.post("/keys", {"name": "early", "nonce": nonce})
        assert refused.status_code == 403 and "Confirm your email address first" in refused.text
        assert "data-key-id=" not in refused.text                          # ...but gets no key
        assert c.post("/verify/resend").status_code == 303
        second = mailbox.wait(email, 2)[1].link("/verify")
        assert second != link
        page = c.get(link.removeprefix(stack.base_url))
        assert page.status_code == 200 and "Your email address is confirmed" in page.text
        assert c.get(link.removeprefix(stack.base_url)).status_code == 400   # used once
        assert 'id="unverified"' not in c.get("/keys").text
        create_key(c, "after")


def test_signup_and_reset_reveal_no_account(stack: Stack, mailbox: MailBox) -> None:
    email = new_email()
    first = signup(stack, email, "10.21.0.1")
    again = signup(stack, email, "10.21.0.2")     # the same address once more: the very same answer
    assert (first.status_code, first.headers["location"]) == (again.status_code, again.headers["location"])
    letters = mailbox.wait(email, 2)
    assert "Sign-up attempt" in letters[1].subject and "/password/forgot" in letters[1].body
    with Cabinet(stack.base_url) as c:
        from_address(c, "10.21.0.3")
        token = c.csrf_of("/password/forgot")
        known = c.http.post("/password/forgot", data={"csrf": token, "email": email})
        unknown = c.http.post("/password/forgot", data={"csrf": token, "email": "nobody-" + email})
        assert known.status_code == unknown.status_code == 303
        assert known.headers["location"] == unknown.headers["location"] == "/password/sent"
    assert mailbox.to("nobody-" + email) == []
    assert "Set a new password" in mailbox.wait(email, 3)[2].subject


def test_reset_link_works_once_and_expires(stack: Stack, mailbox: MailBox) -> None:
    email = new_email()
    signup(stack, email, "10.22.0.1")
    mailbox.wait(email)
    with Cabinet(stack.base_url) as owner:
        assert owner.login(email).status_code == 303

        def ask() -> str:
            before = len(mailbox.to(email))
            with Cabinet(stack.base_url) as c:
                token = c.csrf_of("/password/forgot")
                c.http.post("/password/forgot", data={"csrf": token, "email": email})
            return mailbox.wait(email, before + 1)[-1].link("/password/reset")

        # an expired link (this stack's links live 2 s)
        stale = ask().removeprefix(stack.base_url)
        time.sleep(2.5)
        assert httpx.get(stack.base_url + stale).status_code == 400
        link = ask().removeprefix(stack.base_url)
        with Cabinet(stack.base_url) as c:
            page = c.get(link)
            assert page.status_code == 200
            token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            short = c.http.post("/password/reset", data={"csrf": csrf, "token": token, "password": "short",
                                                         "password2": "short"})
            assert short.status_code == 400 and 'aria-invalid="true"' in short.text
            new = "a brand new passphrase"
            done = c.http.post("/password/reset", data={"csrf": csrf, "token": token, "password": new,
                                                        "password2": new})
            assert done.status_code == 303 and done.headers["location"] == "/login?done=password-reset"
            again = c.http.post("/password/reset", data={"csrf": csrf, "token": token, "password": new,
                                                         "password2": new})
            assert again.status_code == 400                                # the link worked once
        assert owner.get("/").status_code == 303                           # old sessions are closed
        assert "Your password was changed" in mailbox.to(email)[-1].subject
    with Cabinet(stack.base_url) as c:
        assert c.login(email, PASSWORD).status_code == 401
        assert c.login(email, "a brand new passphrase").status_code == 303


def test_password_change_closes_other_sessions(stack: Stack, mailbox: MailBox) -> None:
    email = new_email()
    with Cabinet(stack.base_url) as a, Cabinet(stack.base_url) as b:
        assert a.signup(email).status_code == 303
        assert b.login(email).status_code == 303
        wrong = a.post("/settings/password", {"current": "not it", "password": "x" * 10, "password2": "x" * 10})
        assert wrong.status_code == 400 and "The current password is not right." in wrong.text
        ok = a.post("/settings/password", {"current": PASSWORD, "password": "x" * 10, "password2": "x" * 10})
        assert ok.status_code == 303
        assert a.get("/settings").status_code == 200            # this browser stays in
        assert b.get("/settings").status_code == 303            # the other one is out
    assert "Your password was changed" in mailbox.wait(email, 2)[-1].subject


def test_signups_limited_per_client_address(stack: Stack) -> None:
    codes = [signup(stack, new_email(), "10.23.0.1").status_code for _ in range(7)]
    assert codes == [303] * 6 + [429]
    assert signup(stack, new_email(), "10.23.0.2").status_code == 303   # another address is not affected


def test_lockout_per_email_and_address_pair(stack: Stack) -> None:
    email = new_email()
    with Cabinet(stack.base_url) as c:
        assert c.signup(email).status_code == 303
    with Cabinet(stack.base_url) as attacker:
        from_address(attacker, "10.24.0.66")
        for _ in range(5):
            assert attacker.login(email, "guess").status_code == 401
        assert attacker.login(email).status_code == 429
    with Cabinet(stack.base_url) as owner:                        # the owner, from elsewhere, still gets in
        from_address(owner, "10.24.0.7")
        assert owner.login(email).status_code == 303


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    fail_first = 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Hook.fail_first > 0:            # the first delivery fails: the gateway retries
            _Hook.fail_first -= 1
            self.send_response(503)
            self.end_headers()
            return
        _Hook.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_alerts_fire_once_per_crossing(stack: Stack, mailbox: MailBox, fakes: Any) -> None:
    hook = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    email = new_email()
    admin_email = make_admin(stack)
    try:
        with Cabinet(stack.base_url) as c, Cabinet(stack.base_url) as admin:
            assert c.signup(email).status_code == 303
            assert admin.login(admin_email).status_code == 303
            c.get(mailbox.wait(email)[0].link("/verify").removeprefix(stack.base_url))
            # refused: a private address, even when loopback is allowed for tests
            bad = c.post("/settings/alerts", {"low_amount": "1", "low_currency": "USD", "by_email": "1",
                                              "webhook_url": "http://10.0.0.5/hook"})
            assert bad.status_code == 400 and "public internet addresses" in bad.text
            url = f"http://127.0.0.1:{hook.server_port}/hook"
            saved = c.post("/settings/alerts", {"low_amount": "95", "low_currency": "RUB", "key_percent": "1",
                                                "by_email": "1", "webhook_url": url})
            assert saved.status_code == 303
            secret = re.search(r'id="alert-secret">([^<]+)<', c.get("/settings").text).group(1)  # type: ignore[union-attr]
            admin.post(f"/console/accounts/{c.account_id}/topup",
                       {"amount": "1", "currency": "USD", "reason": "test", "nonce": "t" + email})
            time.sleep(2)     # exactly 95 RUB: not below the threshold, nothing fires yet
            assert not [m for m in mailbox.to(email) if "Low balance" in m.subject]
            _kid, key = create_key(c, "alerts", monthly_limit_usd="0.0001")
            client = openai.OpenAI(base_url=stack.base_url + "/v1", api_key=key, max_retries=0)
            client.chat.completions.create(model="gpt-4o-mini", max_tokens=5,
                                           messages=[{"role": "user", "content": "hi"}])
            letters = mailbox.wait(email, 2, timeout_s=30)
            subjects = {m.subject for m in letters[1:]}
            deadline = time.monotonic() + 30
            while len(subjects) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
                subjects = {m.subject for m in mailbox.to(email)[1:]}
            assert any("near its monthly limit" in s for s in subjects), subjects
            assert any("Low balance" in s for s in subjects), subjects
            deadline = time.monotonic() + 30
            while len(_Hook.received) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            kinds = sorted(json.loads(body)["type"] for _, body in _Hook.received)
            assert kinds == ["balance.low", "key.limit"]
            for headers, body in _Hook.received:
                expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
                assert headers["x-gateway-signature"] == expected
            # still below: no second alert; back above and below again: one more
            time.sleep(3)
            assert len([m for m in mailbox.to(email) if "Low balance" in m.subject]) == 1
            admin.post(f"/console/accounts/{c.account_id}/topup",
                       {"amount": "5", "currency": "USD", "reason": "up", "nonce": "u" + email})
            time.sleep(3)
            admin.post(f"/console/accounts/{c.account_id}/correct",
                       {"usd": "-5", "reason": "down", "nonce": "d" + email})
            deadline = time.monotonic() + 30
            while len([m for m in mailbox.to(email) if "Low balance" in m.subject]) < 2 and \
                    time.monotonic() < deadline:
                time.sleep(0.2)
            assert len([m for m in mailbox.to(email) if "Low balance" in m.subject]) == 2
    finally:
        hook.shutdown()

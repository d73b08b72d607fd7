"""Issue 14 item 9: behind a reverse proxy every customer shares the proxy's TCP address. The client's
address comes from X-Forwarded-For / Forwarded, but only when the peer is a trusted proxy, walking the list
from the right so that what a client prepends is ignored; the scheme from X-Forwarded-Proto likewise."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, load_config
from gateway.http.client_address import TrustedProxies, parse_network, resolve
from tests.support import REPO
from tests.support.gateway_server import copy_root
from tests.support.web import Cabinet, Stack, new_email, web_stack

MAX_FAILURES = 5   # config/gateway.yaml: web.login_max_failures; a client address is locked after 4x that


@pytest.fixture(scope="module")
def stack(fakes: Any) -> Iterator[Stack]:
    """The gateway as `gateway serve` runs it: the default trusted proxies (loopback, where the tests are)."""
    with web_stack(fakes) as s:
        yield s


def _fail_logins(base_url: str, forwarded_for: str | None, times: int) -> list[int]:
    """`times` failed logins, each for another email (so only the per-address limit can stop them)."""
    statuses = []
    with Cabinet(base_url) as c:
        if forwarded_for is not None:
            c.http.headers["x-forwarded-for"] = forwarded_for
        for _ in range(times):
            statuses.append(c.login(new_email(), "not the password").status_code)
    return statuses


def test_brute_force_behind_the_proxy_does_not_lock_out_other_customers(stack: Stack) -> None:
    victim = new_email()
    with Cabinet(stack.base_url) as c:
        c.http.headers["x-forwarded-for"] = "203.0.113.7"
        assert c.signup(victim).status_code == 303
    # the attacker prepends the victim's address; the proxy appends the attacker's real one
    statuses = _fail_logins(stack.base_url, "203.0.113.7, 198.51.100.9", 4 * MAX_FAILURES + 3)
    assert statuses[: 4 * MAX_FAILURES] == [401] * (4 * MAX_FAILURES)
    assert statuses[4 * MAX_FAILURES:] == [429] * 3   # the attacker's own address is locked...
    with Cabinet(stack.base_url) as c:                  # ...and no one else's
        c.http.headers["x-forwarded-for"] = "203.0.113.7"
        assert c.login(victim).status_code == 303
    with Cabinet(stack.base_url) as c:                  # nor a customer behind a second proxy hop
        c.http.headers["x-forwarded-for"] = "192.0.2.44, 127.0.0.1"
        assert c.login(victim).status_code == 303


def test_forwarded_proto_sets_the_payment_return_url(stack: Stack) -> None:
    with Cabinet(stack.base_url) as c:
        c.http.headers.update({"x-forwarded-for": "203.0.113.8", "x-forwarded-proto": "https"})
        assert c.signup().status_code == 303
        resp = c.post("/billing/topup", {"provider": "yookassa", "amount": "950"})
        assert resp.status_code == 303
    assert stack.payments.last().return_url.startswith(f"https://127.0.0.1:{stack.server.port}/billing?topup=")


def test_headers_from_an_untrusted_peer_are_ignored(fakes: Any) -> None:
    """Loopback is not a trusted proxy here: a client that makes up X-Forwarded-For on every attempt is
    still counted on its TCP address."""
    with web_stack(fakes, GATEWAY_FORWARDED_ALLOW_IPS="10.0.0.1/32") as s, Cabinet(s.base_url) as c:
        c.http.headers["x-forwarded-proto"] = "https"
        assert c.signup().status_code == 303     # logged in before the address is locked below
        statuses = []
        for i in range(4 * MAX_FAILURES + 1):
            statuses += _fail_logins(s.base_url, f"198.51.100.{i + 1}", 1)
        assert statuses[-1] == 429, repr(statuses)
        assert c.post("/billing/topup", {"provider": "yookassa", "amount": "950"}).status_code == 303
        assert s.payments.last().return_url.startswith("http://")


# -- the resolver on its own -----------------------------------------------------------------------------------

def _scope(peer: str, *headers: tuple[str, str]) -> dict[str, Any]:
    return {"type": "http", "client": (peer, 5555), "scheme": "http",
            "headers": [(k.encode(), v.encode()) for k, v in headers]}


TRUSTED = TrustedProxies(["127.0.0.1", "::1", "10.0.0.0/8", "fd00::/8"])


@pytest.mark.parametrize(("peer", "headers", "expected"), [
    ("127.0.0.1", [("x-forwarded-for", "1.2.3.4")], ("1.2.3.4", 0, "http")),
    ("127.0.0.1", [("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.9.9.9")], ("1.2.3.4", 0, "http")),
    ("127.0.0.1", [("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "1.2.3.4")], ("1.2.3.4", 0, "http")),
    ("::1", [("x-forwarded-for", "[2001:DB8::1]:4711"), ("x-forwarded-proto", "https")], ("2001:db8::1", 4711, "https")),
    ("127.0.0.1", [("x-forwarded-for", "2001:db8::2")], ("2001:db8::2", 0, "http")),
    ("127.0.0.1", [("x-forwarded-for", "1.2.3.4:80")], ("1.2.3.4", 80, "http")),
    ("127.0.0.1", [("x-forwarded-for", "::ffff:1.2.3.4")], ("1.2.3.4", 0, "http")),
    ("127.0.0.1", [("x-forwarded-for", "10.0.0.1, 10.0.0.2")], ("10.0.0.1", 0, "http")),   # all trusted: left-most
    ("127.0.0.1", [("x-forwarded-for", "evil\x01x, unknown")], ("unknown", 0, "http")),
    ("127.0.0.1", [("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "javascript")], ("1.2.3.4", 0, "http")),
    ("8.8.8.8", [("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "https")], None),   # untrusted peer
    ("127.0.0.1", [("forwarded", "for=1.2.3.4")], None),   # not the configured header
    ("127.0.0.1", [("x-forwarded-for", " , ")], None),
])
def test_x_forwarded_for(peer: str, headers: list[tuple[str, str]], expected: tuple[str, int, str] | None) -> None:
    assert resolve(_scope(peer, *headers), TRUSTED, "x-forwarded-for") == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("for=192.0.2.60;proto=https;by=203.0.113.43", ("192.0.2.60", 0, "https")),
    ('for="[2001:db8:cafe::17]:4711"', ("2001:db8:cafe::17", 4711, "http")),
    ('For="_gazonk"', ("_gazonk", 0, "http")),
    ("for=6.6.6.6, for=192.0.2.43;proto=https, for=10.1.1.1;proto=http", ("192.0.2.43", 0, "https")),
    ('for=6.6.6.6;garbage"x, for=192.0.2.43', ("192.0.2.43", 0, "http")),   # a client's junk on the left
    ('for=192.0.2.43, for=6.6.6.6;garbage"x', ("unknown", 0, "http")),       # junk where the proxy writes
    ("for=192.0.2.43,, ,for=10.0.0.5", ("192.0.2.43", 0, "http")),
    ("proto=https", None),
])
def test_forwarded(value: str, expected: tuple[str, int, str] | None) -> None:
    assert resolve(_scope("127.0.0.1", ("forwarded", value)), TRUSTED, "forwarded") == expected


def test_trust_everyone_takes_the_left_most_entry() -> None:
    scope = _scope("8.8.8.8", ("x-forwarded-for", "1.2.3.4, 5.6.7.8"))
    assert resolve(scope, TrustedProxies(["*"]), "x-forwarded-for") == ("1.2.3.4", 0, "http")


def test_a_long_header_is_linear() -> None:
    """The headers are the proxy's, but long lists and garbage must not cost more than a pass over them."""
    many = ", ".join(f"10.0.{i // 250}.{i % 250}" for i in range(5000))
    assert resolve(_scope("127.0.0.1", ("x-forwarded-for", many)), TRUSTED)[0] == "10.0.0.0"  # type: ignore[index]
    junk = 'for="' + "\\\\" * 30000
    assert resolve(_scope("127.0.0.1", ("forwarded", junk)), TRUSTED, "forwarded") == ("unknown", 0, "http")


def test_config_rejects_what_is_not_an_address(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        parse_network("localhost")
    env = {"GATEWAY_FORWARDED_ALLOW_IPS": "10.0.0.0/8, not-an-ip", "REDIS_URL": "redis://x"}
    with pytest.raises(ConfigError) as err:
        load_config(REPO, env)
    assert any("server.forwarded_allow_ips" in e and "not-an-ip" in e for e in err.value.errors)
    s = load_config(REPO, {"GATEWAY_FORWARDED_ALLOW_IPS": " 10.0.0.0/8 ,::1,*", "REDIS_URL": "redis://x"}).settings
    assert s.forwarded_allow_ips == ("10.0.0.0/8", "::1", "*")
    assert load_config(REPO, {"REDIS_URL": "redis://x"}).settings.forwarded_allow_ips == ("127.0.0.1", "::1")
    root = copy_root(tmp_path)
    yaml_file = root / "config" / "gateway.yaml"
    yaml_file.write_text(re.sub(r"forwarded_allow_ips: .*", "forwarded_allow_ips: []", yaml_file.read_text()))
    nobody = load_config(root, {"REDIS_URL": "redis://x"}).settings.forwarded_allow_ips
    assert nobody == ()
    assert "127.0.0.1" not in TrustedProxies(nobody)

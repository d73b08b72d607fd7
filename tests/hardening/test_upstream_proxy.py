"""Issue 14 item 8: outbound HTTP proxies (environment and per provider), CONNECT with Basic auth to a TLS
upstream verified against the provider's ca_file, absolute form for plain http, and the proxy's set-up
within the connect deadline."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import yaml

from gateway.config import ConfigError, load_config
from gateway.http.client import HTTPError, Pool
from gateway.http.outbound_proxy import bypasses, proxy_from_env
from gateway.usage import Usage
from tests.support.gateway_server import GatewayServer, accounts_call, copy_root, free_port, make_customer
from tests.support.connect_proxy import LoopbackProxy
from tests.support.raw_upstream import (
    USAGE,
    RawRequest,
    RawUpstream,
    Step,
    answer,
    chat_json,
    last_user_text,
)
from tests.support.tls_certs import PKI, make_pki
from tests.support import REPO, config_env

USER, PASSWORD = "gw-user", "s3cret:with@odd chars"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def proxy_url(proxy: LoopbackProxy, user: str = USER, password: str = PASSWORD) -> str:
    return proxy.url_with(quote(user, safe=""), quote(password, safe=""))


def echo(req: RawRequest) -> list[Step]:
    return [answer(200, b"echo " + req.body)]


def chat_echo(req: RawRequest) -> list[Step]:
    return [answer(200, chat_json(f"answer to {last_user_text(req)}"), {"Content-Type": "application/json"})]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_upstream(pki: PKI) -> Iterator[RawUpstream]:
    with RawUpstream(chat_echo, tls=pki.server_context()) as up:
        yield up


@pytest.fixture()
def proxy() -> Iterator[LoopbackProxy]:
    with LoopbackProxy((USER, PASSWORD)) as p:
        yield p


# -- which proxy, from the environment --------------------------------------------------------------------

@pytest.mark.parametrize("env, url, expected", [
    ({"HTTPS_PROXY": "http://p:1"}, "https://api.x.com", "http://p:1"),
    ({"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:1"}, "https://api.x.com", "http://lower:1"),
    ({"HTTPS_PROXY": "http://p:1"}, "http://api.x.com", ""),
    ({"http_proxy": "http://h:1", "HTTP_PROXY": "http://H:1"}, "http://api.x.com", "http://h:1"),
    ({"ALL_PROXY": "http://all:1"}, "https://api.x.com", "http://all:1"),
    ({"all_proxy": "http://all:1", "HTTPS_PROXY": "http://s:1"}, "https://api.x.com", "http://s:1"),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "x.com"}, "https://api.x.com", ""),
    ({"HTTPS_PROXY": "http://p:1", "no_proxy": "*"}, "https://api.x.com", ""),
    ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "other.com"}, "https://api.x.com", "http://p:1"),
    ({"HTTPS_PROXY": "   "}, "https://api.x.com", ""),
])
def test_proxy_from_env(env: dict[str, str], url: str, expected: str) -> None:
    assert proxy_from_env(url, env)[0] == expected


@pytest.mark.parametrize("host, port, no_proxy, bypass", [
    ("api.openai.com", 443, "openai.com", True),
    ("openai.com", 443, ".openai.com", True),
    ("api.openai.com", 443, "*.openai.com", True),
    ("notopenai.com", 443, "openai.com", False),
    ("api.openai.com", 443, "OPENAI.COM", True),
    ("api.openai.com", 443, "openai.com:8443", False),
    ("api.openai.com", 8443, "openai.com:8443", True),
    ("10.1.2.3", 80, "10.0.0.0/8", True),
    ("10.1.2.3", 80, "10.1.2.3", True),
    ("11.1.2.3", 80, "10.0.0.0/8", False),
    ("::1", 443, "::1", True),
    ("::1", 443, "[::1]:443", True),
    ("fd00::5", 443, "fd00::/8", True),
    ("localhost", 80, "example.com, localhost ,", True),
    ("api.openai.com", 443, "", False),
])
def test_no_proxy_entries(host: str, port: int, no_proxy: str, bypass: bool) -> None:
    assert bypasses(host, port, no_proxy) is bypass


# -- config load -------------------------------------------------------------------------------------------

def _root_with(tmp_path: Path, **openai_fields: object) -> Path:
    root = copy_root(tmp_path)
    path = root / "providers.d" / "openai.yaml"
    doc = yaml.safe_load(path.read_text())
    doc.update(openai_fields)
    path.write_text(yaml.safe_dump(doc))
    return root


def test_per_provider_proxy_overrides_the_environment(tmp_path: Path) -> None:
    env = config_env(HTTPS_PROXY="http://env-proxy:3128")
    cfg = load_config(_root_with(tmp_path, proxy="http://own:8080"), env)
    assert cfg.providers["openai"].proxy == "http://own:8080"
    assert cfg.providers["anthropic"].proxy == "http://env-proxy:3128"


@pytest.mark.parametrize("value", ["", "none", "NONE"])
def test_proxy_none_forces_a_direct_connection(tmp_path: Path, value: str) -> None:
    cfg = load_config(_root_with(tmp_path, proxy=value), config_env(HTTPS_PROXY="http://env-proxy:3128"))
    assert cfg.providers["openai"].proxy == ""


def test_socks_and_https_proxies_are_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(_root_with(tmp_path, proxy="socks5://h:1080"), config_env())
    assert any("openai.yaml: proxy: socks5:// proxies are not supported" in e for e in exc.value.errors)
    with pytest.raises(ConfigError) as exc:
        load_config(REPO, config_env(ALL_PROXY="socks5h://user:pw@h:1080", NO_PROXY="googleapis.com"))
    errors = "\n".join(exc.value.errors)
    assert "ALL_PROXY=socks5h://h:1080" in errors and "pw" not in errors, "named, without the password"
    assert "gemini" not in errors, "a host in NO_PROXY does not use it"
    with pytest.raises(ConfigError) as exc:
        load_config(_root_with(tmp_path / "b", proxy="https://h:443"), config_env())
    assert "https:// proxies are not supported" in exc.value.errors[0]


def test_ca_file_must_exist_and_ssl_cert_file_is_honoured(tmp_path: Path, pki: PKI) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(_root_with(tmp_path, ca_file="nowhere.pem"), config_env())
    assert "openai.yaml: ca_file: no such file" in exc.value.errors[0]
    cfg = load_config(REPO, config_env(SSL_CERT_FILE=str(pki.ca_file)))
    assert cfg.providers["openai"].ca_file == str(pki.ca_file)
    with pytest.raises(ConfigError):
        load_config(REPO, config_env(SSL_CERT_FILE=str(tmp_path / "missing.pem")))


# -- the client through the proxy -------------------------------------------------------------------------

async def test_https_through_connect_with_auth_verified_against_ca_file(proxy: LoopbackProxy,
                                                                      tls_upstream: RawUpstream, pki: PKI) -> None:
    pool = Pool(tls_upstream.base_url + "/v1", {}, proxy=proxy_url(proxy), ca_file=str(pki.ca_file))
    try:
        for word in ("one", "two"):
            r = await pool.request("POST", "/chat/completions",
                                   b'{"messages": [{"role": "user", "content": "%s"}]}' % word.encode(), timeout=5)
            assert r.status == 200
            assert f"answer to {word}".encode() in await r.read()
    finally:
        pool.close()
    target = f"127.0.0.1:{tls_upstream.port}"
    assert [(s.method, s.target, s.authorization) for s in proxy.seen] == [("CONNECT", target, basic(USER, PASSWORD))], \
        "one tunnel, kept alive for both requests"


async def test_tls_behind_the_proxy_is_verified(proxy: LoopbackProxy, tls_upstream: RawUpstream) -> None:
    pool = Pool(tls_upstream.base_url, {}, proxy=proxy_url(proxy))   # the system's CAs: our test CA is not one
    with pytest.raises(HTTPError) as exc:
        await pool.request("POST", "/x", b"{}", timeout=5)
    assert str(exc.value) == "connection error: TLS certificate verification failed"
    assert "SSLCertVerificationError" in exc.value.detail


async def test_wrong_proxy_credentials_are_a_clear_error(proxy: LoopbackProxy, tls_upstream: RawUpstream,
                                                         pki: PKI) -> None:
    before = tls_upstream.connections
    for url in (proxy_url(proxy, USER, "wrong"), proxy.url_with()):
        pool = Pool(tls_upstream.base_url, {}, proxy=url, ca_file=str(pki.ca_file))
        with pytest.raises(HTTPError) as exc:
            await pool.request("POST", "/x", b"{}", timeout=5)
        assert "proxy authentication failed (HTTP 407" in str(exc.value)
        assert "wrong" not in str(exc.value)
    assert tls_upstream.connections == before, "the proxy let nothing through"


async def test_plain_http_goes_in_absolute_form(proxy: LoopbackProxy) -> None:
    with RawUpstream(echo) as up:
        pool = Pool(up.base_url + "/base", {"X-Test": "1"}, proxy=proxy_url(proxy))
        try:
            for word in (b"a", b"b"):
                r = await pool.request("POST", "/path", word, timeout=5)
                assert await r.read() == b"echo " + word
        finally:
            pool.close()
        assert [(s.method, s.target, s.authorization) for s in proxy.seen] == \
            [("POST", f"{up.base_url}/base/path", basic(USER, PASSWORD))] * 2
        assert [r.target for r in up.requests] == ["/base/path"] * 2
        assert up.requests[0].headers["host"] == f"127.0.0.1:{up.port}"
        assert "proxy-authorization" not in up.requests[0].headers

        pool = Pool(up.base_url, {}, proxy=proxy_url(proxy, USER, "wrong"))
        with pytest.raises(HTTPError) as exc:
            await pool.request("POST", "/path", b"x", timeout=5)
        assert "proxy authentication failed (HTTP 407" in str(exc.value)


async def test_proxy_set_up_is_within_the_connect_deadline(tls_upstream: RawUpstream) -> None:
    with LoopbackProxy(silent=True) as silent:
        pool = Pool(tls_upstream.base_url, {}, proxy=silent.url_with())
        started = time.monotonic()
        with pytest.raises(HTTPError) as exc:
            await pool.request("POST", "/x", b"{}", timeout=0.5)
        elapsed = time.monotonic() - started
    assert exc.value.timeout
    assert elapsed < 4, "a proxy that never answers CONNECT is cut at the connect deadline"


# -- end to end: through the gateway, billed only when answered -------------------------------------------

def _gateway_root(tmp_path: Path, pki: PKI, **openai_fields: object) -> Path:
    return _root_with(tmp_path, ca_file=str(pki.ca_file), **openai_fields)


def _chat(gw: GatewayServer, secret: str, text: str) -> httpx.Response:
    return httpx.post(f"{gw.base_url}/v1/chat/completions", timeout=20,
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]},
                      headers={"Authorization": f"Bearer {secret}"})


def test_gateway_reaches_a_tls_provider_through_the_env_proxy(tmp_path: Path, gateway_env: dict[str, str], pki: PKI,
                                                              proxy: LoopbackProxy, tls_upstream: RawUpstream) -> None:
    env = gateway_env | {"OPENAI_BASE_URL": tls_upstream.base_url + "/v1", "HTTPS_PROXY": proxy_url(proxy)}
    with GatewayServer(_gateway_root(tmp_path, pki), env) as gw:
        c = make_customer(gw)
        r = _chat(gw, c.secret, "via proxy")
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "answer to via proxy"
        [entry] = accounts_call(gw, lambda acc: acc.history(c.account_id, 10))
        expected = gw.app.prices.cost("gpt-4o-mini", Usage(input_tokens=USAGE["prompt_tokens"],
                                                           output_tokens=USAGE["completion_tokens"]))
        assert entry["cost"] == expected > 0
    assert ("CONNECT", f"127.0.0.1:{tls_upstream.port}", basic(USER, PASSWORD)) in \
        [(s.method, s.target, s.authorization) for s in proxy.seen]


def test_gateway_wrong_proxy_auth_is_503_and_free(tmp_path: Path, gateway_env: dict[str, str], pki: PKI,
                                                  proxy: LoopbackProxy, tls_upstream: RawUpstream) -> None:
    env = gateway_env | {"OPENAI_BASE_URL": tls_upstream.base_url + "/v1"}
    root = _gateway_root(tmp_path, pki, proxy=proxy_url(proxy, USER, "wrong"))
    with GatewayServer(root, env) as gw:
        c = make_customer(gw)
        r = _chat(gw, c.secret, "via proxy")
        assert r.status_code == 503
        body = r.json()
        assert body["statusCode"] == 503 and body["error"] == "Service Unavailable"
        assert "proxy authentication failed" in body["message"] and "wrong" not in body["message"]
        [entry] = accounts_call(gw, lambda acc: acc.history(c.account_id, 10))
        assert entry["cost"] == 0 and entry["status"] == 503


def test_gateway_provider_proxy_overrides_env(tmp_path: Path, gateway_env: dict[str, str], pki: PKI,
                                              proxy: LoopbackProxy, tls_upstream: RawUpstream) -> None:
    env = gateway_env | {"OPENAI_BASE_URL": tls_upstream.base_url + "/v1",
                         "HTTPS_PROXY": f"http://127.0.0.1:{free_port()}"}   # nobody listens there
    with GatewayServer(_gateway_root(tmp_path, pki, proxy=proxy_url(proxy)), env) as gw:
        c = make_customer(gw)
        assert _chat(gw, c.secret, "own proxy").status_code == 200
    assert [s.method for s in proxy.seen] == ["CONNECT"]

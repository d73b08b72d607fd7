"""Issue 14 item 13 (upstream part): what the client reads about an upstream failure is plain words, never
Python internals; the details are in the log, with the request id."""

from __future__ import annotations

import errno
import logging
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.http.client import HTTPError, Pool, connect_error
from tests.support.gateway_server import GatewayServer, free_port, make_customer
from tests.support.raw_upstream import RawUpstream, answer
from tests.support.tls_certs import PKI, make_pki
from tests.support import REPO

INTERNALS = re.compile(r"Error\b|Exception|errno|\[Errno|gaierror|SSL|ssl\.|Traceback|object has no attribute")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_upstream(pki: PKI) -> Iterator[RawUpstream]:
    with RawUpstream(lambda req: [answer(200, b"{}")], tls=pki.server_context()) as up:
        yield up


@pytest.mark.parametrize("exc, words", [
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "DNS lookup failed"),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('127.0.0.1', 9)"), "connection refused"),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "connection reset"),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), "network unreachable"),
    (ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
     "TLS certificate verification failed"),
    (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "TLS handshake failed"),
    (OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 9), [Errno 111] ..."), "cannot connect"),
])
def test_connect_errors_in_plain_words(exc: OSError, words: str) -> None:
    err = connect_error(exc)
    assert str(err) == f"connection error: {words}"
    assert not INTERNALS.search(str(err))
    assert type(exc).__name__ in err.detail, "the details are kept for the log"


async def test_garbage_from_the_upstream_is_plain_words() -> None:
    with RawUpstream(lambda req: [b"SMTP ready\r\n\r\n"]) as up:
        pool = Pool(up.base_url, {})
        with pytest.raises(HTTPError) as exc:
            await pool.request("POST", "/x", b"{}", timeout=5)
    assert str(exc.value) == "invalid HTTP from upstream"
    assert exc.value.detail


def _failed_call(base_url: str, gateway_env: dict[str, str], caplog: pytest.LogCaptureFixture,
                 root: Path = REPO) -> tuple[str, str]:
    """(the client's message, the log lines about its request id)."""
    with GatewayServer(root, gateway_env | {"OPENAI_BASE_URL": base_url}) as gw:
        c = make_customer(gw)
        with caplog.at_level(logging.WARNING, logger="gateway"):
            r = httpx.post(f"{gw.base_url}/v1/chat/completions", timeout=20,
                           json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                           headers={"Authorization": f"Bearer {c.secret}"})
    assert r.status_code == 503
    body = r.json()
    assert set(body) == {"statusCode", "error", "message"} and body["statusCode"] == 503
    rid = r.headers["x-request-id"]
    logged = "\n".join(rec.getMessage() for rec in caplog.records if rid in rec.getMessage())
    return body["message"], logged


def test_connection_refused_end_to_end(gateway_env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    message, logged = _failed_call(f"http://127.0.0.1:{free_port()}/v1", gateway_env, caplog)
    assert message == "provider 'openai' unavailable: connection error: connection refused"
    assert "ConnectionRefusedError" in logged


def test_tls_verification_end_to_end(gateway_env: dict[str, str], caplog: pytest.LogCaptureFixture,
                                     tls_upstream: RawUpstream) -> None:
    message, logged = _failed_call(tls_upstream.base_url + "/v1", gateway_env, caplog)
    assert message == "provider 'openai' unavailable: connection error: TLS certificate verification failed"
    assert not INTERNALS.search(message)
    assert "SSLCertVerificationError" in logged

"""gateway.proxy.billing: what a call reserves, what it is charged, what history records, and how the gate
answers when the ledger refuses or cannot be reached — against a recording ledger, at the tiny config's
prices (tests/support/tiny_config.py: o-chat $1 in / $0.5 cached / $4 out per 1M tokens, o-img $0.01 or
$0.2 an image, markup 10 %)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from gateway.config import Config
from gateway.errors import Forbidden, RateLimited, Unauthorized, UpstreamUnavailable
from gateway.pricing import PriceBook
from gateway.proxy.billing import BillingGate, Ticket
from gateway.proxy.endpoints import ENDPOINTS
from gateway.proxy.outcome import Outcome
from gateway.proxy.routing import RouteDecision, Router
from gateway.store.ledger import ADMIT_OK, Admission, Caller
from gateway.store.resp import StoreUnavailable
from gateway.usage import Usage
from tests.support.recording_ledger import RecordingLedger
from tests.support.tiny_config import DEFAULT_MAX_OUTPUT_TOKENS, tiny_config

CALLER = Caller("acct_1", "key_1")
IN, CACHED, OUT = 1_000, 500, 4_000  # o-chat, nano-USD a token before the markup


def marked_up(nano: int) -> int:
    """+10 %, rounded up once (the price book's rule)."""
    return -(-nano * 11 // 10)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return tiny_config(tmp_path_factory.mktemp("tiny") / "root")


@pytest.fixture(scope="module")
def router(config: Config) -> Router:
    return Router(config)


@pytest.fixture()
def ledger() -> RecordingLedger:
    return RecordingLedger()


@pytest.fixture()
def gate(config: Config, ledger: RecordingLedger) -> BillingGate:
    return BillingGate(ledger, PriceBook(config.prices), config.settings)  # type: ignore[arg-type]


def decide(router: Router, model: str, endpoint: str = "chat") -> RouteDecision:
    return router.resolve(model, ENDPOINTS[endpoint])


def admit(gate: BillingGate, decision: RouteDecision, body: dict[str, Any], request_id: str = "req_1") -> Ticket:
    raw = orjson.dumps(body)
    return asyncio.run(gate.admit(CALLER, decision, body, raw, request_id).ticket())


# --------------------------------------------------------------------------- the output cap


@pytest.mark.parametrize("body, cap", [
    ({"max_tokens": 50}, 50),
    ({"max_completion_tokens": 70, "max_tokens": 50}, 70),   # the newer name wins
    ({"max_output_tokens": 30}, 30),                         # the Responses API's name
    ({}, 1000),                                              # the model's own cap, under the default
    ({"max_tokens": 0}, 1000), ({"max_tokens": -5}, 1000), ({"max_tokens": "50"}, 1000), ({"max_tokens": 2.5}, 1000),
    ({"max_tokens": 50, "n": 3}, 150),                       # every choice may use the whole cap
    ({"n": 2}, 2000),
    ({"max_tokens": 50, "n": 0}, 50), ({"max_tokens": 50, "n": 129}, 50), ({"max_tokens": 50, "n": "2"}, 50),
])
def test_output_cap(gate: BillingGate, router: Router, body: dict[str, Any], cap: int) -> None:
    assert gate.output_cap(decide(router, "o-chat"), body) == cap


def test_a_model_cap_above_the_default_is_held_to_the_default(gate: BillingGate, router: Router) -> None:
    assert gate.output_cap(decide(router, "o-big"), {}) == DEFAULT_MAX_OUTPUT_TOKENS       # cap 100,000
    assert gate.output_cap(decide(router, "a-chat"), {}) == DEFAULT_MAX_OUTPUT_TOKENS      # no cap of its own
    assert gate.output_cap(decide(router, "o-big"), {"max_tokens": 50_000}) == 50_000      # the client's own


def test_an_image_call_reserves_no_output_tokens(gate: BillingGate, router: Router) -> None:
    assert gate.output_cap(decide(router, "o-img", "image"), {"max_tokens": 500}) == 0


# --------------------------------------------------------------------------- the reservation


def test_a_reservation_counts_every_prompt_byte_as_a_token_plus_the_cap(gate: BillingGate, router: Router) -> None:
    body = {"model": "o-chat", "messages": [{"role": "user", "content": "Привет, мир"}], "max_tokens": 50}
    raw = orjson.dumps(body)
    assert gate.reservation(decide(router, "o-chat"), body, raw) == marked_up(len(raw) * IN + 50 * OUT)
    bigger = gate.reservation(decide(router, "o-chat"), body, raw + b" " * 1000)
    assert bigger == marked_up((len(raw) + 1000) * IN + 50 * OUT)


def test_a_reservation_bounds_the_charge_of_any_answer_within_the_cap(gate: BillingGate, router: Router,
                                                                      config: Config) -> None:
    body = {"messages": [{"role": "user", "content": "x" * 300}], "max_tokens": 64}
    raw = orjson.dumps(body)
    reserve = gate.reservation(decide(router, "o-chat"), body, raw)
    prices = PriceBook(config.prices)
    for usage in (Usage(input_tokens=len(raw), output_tokens=64), Usage(input_tokens=80, output_tokens=64),
                  Usage(input_tokens=len(raw), cached_input_tokens=len(raw), output_tokens=1)):
        assert prices.cost("o-chat", usage) <= reserve


def test_images_reserve_the_dearest_image_price_per_image(gate: BillingGate, router: Router) -> None:
    decision = decide(router, "o-img", "image")
    one = marked_up(200_000_000)  # $0.2, the dearest of $0.01 and $0.2
    assert gate.reservation(decision, {"prompt": "a cat", "n": 3}, b"{}") == 3 * one
    assert gate.reservation(decision, {"prompt": "a cat"}, b"{}") == one
    assert gate.reservation(decision, {"prompt": "a cat", "n": "3"}, b"{}") == one


# --------------------------------------------------------------------------- admission


def test_admission_sends_the_reservation_and_returns_a_ticket(gate: BillingGate, router: Router,
                                                              ledger: RecordingLedger) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
    ticket = admit(gate, decide(router, "o-chat"), body, "req_42")
    [sent] = ledger.admissions
    assert sent == {"caller": CALLER, "request_id": "req_42", "model": "o-chat", "endpoint": "/v1/chat/completions",
                    "reserve": marked_up(len(orjson.dumps(body)) * IN + 10 * OUT)}
    assert (ticket.model, ticket.endpoint, ticket.reserve, ticket.settled) == ("o-chat", sent["endpoint"],
                                                                                sent["reserve"], False)


@pytest.mark.parametrize("code, error, message", [
    (1, Unauthorized, "invalid token"), (2, Unauthorized, "token revoked"),
    (3, Forbidden, "account is blocked"), (4, Forbidden, "model 'o-chat' is not allowed for this key"),
    (7, Forbidden, "insufficient balance"), (8, Forbidden, "monthly limit exceeded"),
])
def test_refusals(gate: BillingGate, router: Router, ledger: RecordingLedger, code: int, error: type,
                  message: str) -> None:
    ledger.answer = Admission(code, 0, 0, 0, 0, 0)
    with pytest.raises(error, match=message):
        admit(gate, decide(router, "o-chat"), {"max_tokens": 1})


def test_a_rate_limit_says_when_to_retry_in_whole_seconds(gate: BillingGate, router: Router,
                                                          ledger: RecordingLedger) -> None:
    ledger.answer = Admission(5, 60, 0, 0, 0, 1_200)
    with pytest.raises(RateLimited) as err:
        admit(gate, decide(router, "o-chat"), {"max_tokens": 1})
    assert err.value.headers["Retry-After"] == "2"  # 1.2 s, rounded up
    assert err.value.headers["x-ratelimit-limit-requests"] == "60"
    assert err.value.headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-limit-tokens" not in err.value.headers  # the key has no TPM limit
    ledger.answer = Admission(6, 0, 0, 1000, 0, 0)
    with pytest.raises(RateLimited) as err:
        admit(gate, decide(router, "o-chat"), {"max_tokens": 1})
    assert err.value.headers["Retry-After"] == "1" and err.value.headers["x-ratelimit-limit-tokens"] == "1000"


def test_while_the_store_is_down_nothing_is_sent(gate: BillingGate, router: Router, ledger: RecordingLedger) -> None:
    ledger.resp.down = True
    with pytest.raises(UpstreamUnavailable, match="nothing was charged") as err:
        admit(gate, decide(router, "o-chat"), {"max_tokens": 1})
    assert err.value.headers == {"Retry-After": "1"} and ledger.admissions == []
    ledger.resp.down = False
    ledger.unconfirmed.pending.extend(range(ledger.unconfirmed.limit))  # too many settlements wait
    with pytest.raises(UpstreamUnavailable):
        admit(gate, decide(router, "o-chat"), {"max_tokens": 1})
    assert ledger.admissions == []


def test_an_admission_lost_on_the_way_is_released_later_one_never_sent_is_not(
        gate: BillingGate, router: Router, ledger: RecordingLedger) -> None:
    ledger.answer = TimeoutError("no reply")  # sent, maybe run: release whatever it may hold
    with pytest.raises(UpstreamUnavailable):
        admit(gate, decide(router, "o-chat"), {"max_tokens": 1}, "req_lost")
    [later] = ledger.later
    assert (later["request_id"], later["cost"], later["fields"]["status"]) == ("req_lost", 0, 503)
    ledger.answer = StoreUnavailable("breaker open")  # never sent: nothing to release
    with pytest.raises(UpstreamUnavailable):
        admit(gate, decide(router, "o-chat"), {"max_tokens": 1}, "req_unsent")
    assert len(ledger.later) == 1


# --------------------------------------------------------------------------- settlement


def settle(gate: BillingGate, ticket: Ticket, outcome: Outcome, **kw: Any) -> int:
    async def go() -> int:
        return await gate.settle(ticket, outcome, **kw)
    return asyncio.run(go())


def test_a_success_is_charged_its_reported_usage(gate: BillingGate, router: Router, ledger: RecordingLedger) -> None:
    ticket = admit(gate, decide(router, "o-chat"), {"max_tokens": 100})
    usage = Usage(input_tokens=1_200, cached_input_tokens=200, output_tokens=90, reasoning_tokens=40)
    cost = settle(gate, ticket, Outcome(200, "full", usage))
    assert cost == marked_up(1_000 * IN + 200 * CACHED + 90 * OUT)
    [s] = ledger.settlements
    assert (s["cost"], s["reserved"], s["tokens"]) == (cost, True, 0)  # no TPM limit: no token window
    assert {k: s["fields"][k] for k in ("key", "model", "provider", "endpoint", "status", "in", "cached", "out",
                                         "reasoning")} == {
        "key": "key_1", "model": "o-chat", "provider": "full", "endpoint": "/v1/chat/completions", "status": 200,
        "in": 1_200, "cached": 200, "out": 90, "reasoning": 40}
    assert "estimated" not in s["fields"] and "error" not in s["fields"]


def test_a_success_without_usage_is_billed_an_estimate_marked_as_such(gate: BillingGate, router: Router,
                                                                      ledger: RecordingLedger) -> None:
    ticket = admit(gate, decide(router, "o-chat"), {"max_tokens": 100})
    cost = settle(gate, ticket, Outcome(200, "full", None), raw_len=401, reply_len=80)
    assert cost == marked_up(101 * IN + 20 * OUT)  # ~4 bytes a token, rounded up
    fields = ledger.settlements[0]["fields"]
    assert (fields["in"], fields["out"], fields["estimated"]) == (101, 20, 1)


def test_a_failure_costs_nothing_and_is_recorded(gate: BillingGate, router: Router, ledger: RecordingLedger) -> None:
    ticket = admit(gate, decide(router, "o-chat"), {"max_tokens": 100})
    cost = settle(gate, ticket, Outcome(503, "full", Usage(input_tokens=10, output_tokens=10), "x" * 500))
    [s] = ledger.settlements
    assert cost == 0 and s["cost"] == 0 and s["reserved"] is True  # the reservation is released all the same
    assert s["fields"]["status"] == 503 and s["fields"]["error"] == "x" * 300
    assert s["fields"]["provider"] == "full"
    unanswered = admit(gate, decide(router, "o-chat"), {"max_tokens": 1})
    settle(gate, unanswered, Outcome(0))
    assert ledger.settlements[1]["fields"]["status"] == 500 and ledger.settlements[1]["fields"]["provider"] == "-"


def test_a_ticket_is_settled_once(gate: BillingGate, router: Router, ledger: RecordingLedger) -> None:
    ticket = admit(gate, decide(router, "o-chat"), {"max_tokens": 100})
    first = settle(gate, ticket, Outcome(200, "full", Usage(input_tokens=10, output_tokens=10)))
    assert first > 0 and ticket.settled
    assert settle(gate, ticket, Outcome(200, "full", Usage(input_tokens=10, output_tokens=10))) == 0
    assert len(ledger.settlements) == 1


def test_images_are_charged_by_size_and_quality(gate: BillingGate, router: Router, ledger: RecordingLedger) -> None:
    ticket = admit(gate, decide(router, "o-img", "image"), {"prompt": "a cat", "n": 2})
    cost = settle(gate, ticket, Outcome(200, "full", Usage(images=2)), price_dims=("1024x1024", "low"))
    assert cost == marked_up(2 * 10_000_000)  # 2 × $0.01
    assert ledger.settlements[0]["fields"]["images"] == 2


def test_a_key_with_a_tpm_limit_counts_the_call_s_tokens(gate: BillingGate, router: Router,
                                                          ledger: RecordingLedger) -> None:
    ledger.answer = Admission(ADMIT_OK, 0, 0, 10_000, 9_000, 0)
    ticket = admit(gate, decide(router, "o-chat"), {"max_tokens": 100})
    settle(gate, ticket, Outcome(200, "full", Usage(input_tokens=120, output_tokens=30)), extra={"stream": 1})
    assert ledger.settlements[0]["tokens"] == 150 and ledger.settlements[0]["fields"]["stream"] == 1

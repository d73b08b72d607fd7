"""The ledger invariant through upstream faults (issue 14: "upstream 500s, cut streams"): a customer's calls
meet provider errors, rate limits, streams the provider cuts or breaks, and streams the client abandons —
and at the end the balance is top-ups minus the history's costs, every request id is recorded once, every
answer that reached the client is charged, failed calls cost nothing, and no reservation is left open."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.ledger import Holder, assert_ledger_exact, ledger_state


@pytest.fixture()
def holder(gateway, redis_env) -> Holder:
    from tests.support.gateway_server import make_customer
    c = make_customer(gateway, usd="20")
    return Holder(c.account_id, c.key_id, c.secret)


def test_upstream_faults_keep_the_ledger_exact(gateway, fakes, redis_env, holder: Holder) -> None:
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=holder.secret, max_retries=0, timeout=20)
    msg = [{"role": "user", "content": "hello there"}]
    delivered: list[str] = []
    failed: list[str] = []

    def call(model: str = "gpt-4o-mini") -> None:
        try:
            raw = client.chat.completions.with_raw_response.create(model=model, messages=msg, max_tokens=20)
            delivered.append(raw.headers["x-request-id"])
        except openai.APIStatusError as exc:
            failed.append(exc.response.headers["x-request-id"])

    def stream(model: str = "gpt-4o-mini", leave_after: int | None = None) -> None:
        with httpx.stream("POST", gateway.base_url + "/v1/chat/completions", timeout=20,
                          headers={"Authorization": f"Bearer {holder.secret}"},
                          json={"model": model, "messages": msg, "stream": True,
                                "stream_options": {"include_usage": True}}) as r:
            rid = r.headers["x-request-id"]
            if r.status_code != 200:
                r.read()
                failed.append(rid)
                return
            for n, _ in enumerate(r.iter_lines()):
                if leave_after is not None and n >= leave_after:
                    break  # the client goes away mid-stream: billed for what was produced
            delivered.append(rid)

    for provider, model in (("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"),
                            ("gemini", "gemini-2.5-flash")):
        call(model)                                        # a plain success
        fakes[provider].fail(500)
        call(model)                                        # a provider 500 (no fallback): 503, free
        fakes[provider].fail(429, retry_after="1")
        call(model)                                        # the provider's rate limit: 429, free
        stream(model)                                      # a whole stream
        fakes[provider].reply(cut_after=3)
        stream(model)                                      # the provider drops the connection mid-stream
        fakes[provider].reply(error_after=2)
        stream(model)                                      # an in-stream error event
        fakes[provider].reply(chunk_delay_ms=50)
        stream(model, leave_after=2)                       # the client leaves mid-stream
        fakes[provider].fail(500)
        stream(model)                                      # a 500 before the first byte: 503, free

    state = ledger_state(gateway.app.redis_url, holder, redis_env["GATEWAY_REDIS_PREFIX"])
    assert_ledger_exact(state, delivered)
    by_rid = state.costs_by_rid()
    assert all(by_rid.get(rid) == [0] for rid in failed), "a failed call was charged"
    assert len(state.history) == len(delivered) + len(failed) == 24
    assert state.credited - state.spent == 20_000_000_000 - sum(e["cost"] for e in state.history)

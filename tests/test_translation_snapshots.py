"""Golden tests over the grid provider × fixture, discovered from tests/fixtures/.

A template change shows up here as a snapshot diff (`pytest --snapshot-update` to accept it), and
every translated payload must satisfy the provider's official spec.
"""

from __future__ import annotations

import orjson
import pytest

from tests.fakes.specs import validate
from tests.support import (WIRE_REQUEST_SCHEMA, WIRE_RESPONSE_SCHEMA, chat_model_for, load_json, repo_config,
                           request_fixtures, response_fixtures)

PROVIDERS = sorted(repo_config().providers)
VARIABLES = {"request_id": "req_test", "created": 1777300000}


def _variables(model: str) -> dict:
    m = repo_config().models[model]
    return {**VARIABLES, "model": m.name, "upstream_model": m.upstream_name,
            "max_output_tokens": m.max_output_tokens}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("fixture", request_fixtures(), ids=lambda p: p.stem)
def test_upstream_request(provider: str, fixture, snapshot) -> None:
    cfg = repo_config()
    model = chat_model_for(provider)
    body = load_json(fixture)
    body["model"] = model
    wire = cfg.providers[provider].wire
    op = cfg.wires[wire].operations["chat"]
    req = op.build_request(body, orjson.dumps(body), _variables(model))
    payload = orjson.loads(req.body)
    assert {"provider": provider, "method": req.method, "path": req.path, "body": payload} == snapshot
    spec, schema = WIRE_REQUEST_SCHEMA[wire]
    assert validate(spec, schema, payload) == []


@pytest.mark.parametrize("fixture", response_fixtures(), ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_client_response(fixture, snapshot) -> None:
    cfg = repo_config()
    wire = fixture.parent.name
    upstream = load_json(fixture)
    spec, schema = WIRE_RESPONSE_SCHEMA[wire]
    assert validate(spec, schema, upstream) == [], "the recorded provider answer itself must be valid"
    provider = next(p for p in PROVIDERS if cfg.providers[p].wire == wire)
    model = chat_model_for(provider)
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    client, usage = cfg.wires[wire].operations["chat"].translate_response(upstream, body, _variables(model))
    if client is None:  # pass-through: the client gets the provider's bytes
        client = upstream
    assert {"client": client, "usage": usage} == snapshot
    assert validate("openai", "CreateChatCompletionResponse", client) == []

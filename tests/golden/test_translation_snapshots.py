"""Golden tests over the grid provider × endpoint × fixture, discovered from tests/fixtures/.

Requests: every OpenAI-shaped request fixture, for every grid provider that serves the endpoint, becomes the
upstream request the gateway would send (through the adapters and the wire template of the plan).
Answers: every recorded provider answer becomes what the client gets on each endpoint served by that
operation. A template change shows up as a snapshot diff (accept with `--snapshot-update`), and every
payload on both sides must satisfy the official spec.
"""

from __future__ import annotations

import orjson
import pytest

from gateway.http.upstreams import UpstreamReply
from gateway.proxy.endpoints import ENDPOINTS
from tests.support import (
    CLIENT_REQUEST_SCHEMA,
    CLIENT_SCHEMA,
    MINIMAL_REQUEST,
    REQUEST_SCHEMA,
    SAME_ANSWERS,
    WIRE_RESPONSE_SCHEMA,
    load_json,
    request_fixtures,
    response_fixtures,
)
from tests.support.fakes.specs import validate
from tests.support.snapshot_grid import CFG, GRID, PIPELINE, WIRE_PROVIDER, candidate, responses_only

# fields the gateway takes beyond the client's spec (the SDK's extra_body; README: embeddings)
EXTENSIONS = {"embedding": ("task_type",)}
# endpoints whose answers are snapshotted (a streaming twin or a free token count answers nothing new)
ANSWERED = [name for name, e in ENDPOINTS.items() if e.billed != "free" and not e.stream]

def _request_grid():
    for fixture in request_fixtures():
        endpoint = fixture.parent.name
        for provider in GRID.providers():
            found = candidate(provider, endpoint)
            if found and found[0]:
                yield pytest.param(provider, fixture, id=f"{endpoint}-{fixture.stem}-{provider}")


@pytest.mark.parametrize("provider, fixture", list(_request_grid()))
def test_upstream_request(provider: str, fixture, snapshot) -> None:
    endpoint = fixture.parent.name
    (prov, plan), decision = candidate(provider, endpoint)
    body = load_json(fixture)
    sent = {k: v for k, v in body.items() if k not in EXTENSIONS.get(endpoint, ())} | {"model": "m"}
    assert validate(*CLIENT_REQUEST_SCHEMA[endpoint], sent) == [], "the client's request must be valid"
    if not ENDPOINTS[endpoint].model_in_path:
        body["model"] = decision.model.name
    op = CFG.wire_of(prov).operations[plan.operation]
    variables = PIPELINE.variables(decision, "req_test") | {"created": 1777300000}
    _, req = PIPELINE.prepare(plan, op, body, orjson.dumps(body), variables)
    payload = orjson.loads(req.body)
    assert {"provider": provider, "plan": [*plan.adapters, plan.operation], "method": req.method, "path": req.path,
            "body": payload} == snapshot
    spec, schema = REQUEST_SCHEMA[(prov.wire, plan.operation)]
    assert validate(spec, schema, payload) == []


def _response_grid():
    for fixture in response_fixtures():
        wire, recorded = fixture.parent.parent.name, fixture.parent.name
        provider = WIRE_PROVIDER[wire]
        for operation in (recorded, *SAME_ANSWERS.get((wire, recorded), ())):
            for endpoint in ANSWERED:
                found = candidate(provider, endpoint)
                if endpoint == "chat" and operation == "responses":  # the Responses-only model's chat endpoint
                    found = responses_only(provider)
                if found and found[0] and found[0][1].operation == operation:
                    yield pytest.param(provider, endpoint, fixture, found,
                                       id=f"{wire}-{operation}-{fixture.stem}-on-{endpoint}")


@pytest.mark.parametrize("provider, endpoint, fixture, found", list(_response_grid()))
def test_client_answer(provider: str, endpoint: str, fixture, found, snapshot) -> None:
    (prov, plan), decision = found
    wire = fixture.parent.parent.name
    upstream = load_json(fixture)
    spec, schema = WIRE_RESPONSE_SCHEMA[(wire, plan.operation)]
    assert validate(spec, schema, upstream) == [], "the recorded provider answer itself must be valid"
    request = dict(MINIMAL_REQUEST[endpoint])
    if not ENDPOINTS[endpoint].model_in_path:
        request["model"] = decision.model.name
    variables = PIPELINE.variables(decision, "req_test") | {"created": 1777300000}
    op = CFG.wire_of(prov).operations[plan.operation]
    bodies, _ = PIPELINE.prepare(plan, op, request, orjson.dumps(request), variables)
    answer = PIPELINE.translate_back(plan, op, prov, UpstreamReply(200, {}, orjson.dumps(upstream)), bodies, variables)
    client = orjson.loads(answer.body)
    assert {"client": client, "usage": answer.usage} == snapshot
    assert validate(*CLIENT_SCHEMA[endpoint], client) == []

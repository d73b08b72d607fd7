"""`gateway config validate` renders every wire operation (and every provider's variant of one) against
representative requests, provider answers and streams, so a template that compiles but fails at run time (a variable
that does not exist, an optional field used without a default) is reported before it serves anyone.

What is rendered: for every (provider, endpoint, plan) some enabled model is routed to, each sample client
request of the endpoint (gateway/config/samples/requests/<endpoint>/*.json: text, system, tools, images, JSON
mode...), whole and as a stream, through the plan's adapters and the wire's request template; and each sample
answer of the wire operation (samples/responses/<wire>/<operation>/*.json) back through the response template
and the adapters, and each recorded stream (samples/streams/<wire>/<operation>/*.sse) through the stream
mapping and the adapters' stream sides. A GatewayError is a template's deliberate refusal (`fail`, a rejected
parameter) and is fine; anything else is the operator's mistake, reported as `file: template path: message`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import orjson

from gateway.config.model import Config, Provider
from gateway.errors import GatewayError
from gateway.translate.faults import find_undefined
from gateway.translate.tree import template_path

SAMPLES = Path(__file__).resolve().parent / "samples"


@cache
def _samples(kind: str, *parts: str) -> tuple[tuple[str, Any], ...]:
    folder = SAMPLES.joinpath(kind, *parts)
    return tuple((p.stem, orjson.loads(p.read_bytes())) for p in sorted(folder.glob("*.json")))


def render_errors(config: Config) -> list[str]:
    """`file: path: message` for every template that fails on a sample; one line per distinct failure."""
    # imported here: the proxy package imports the config package while it initialises
    from gateway.proxy.endpoints import ENDPOINTS
    from gateway.proxy.routing import Router

    router = Router(config)
    done: set[tuple[str, str, Any]] = set()
    found: dict[tuple[str, str], str] = {}
    for model in config.enabled_models:
        for endpoint in ENDPOINTS.values():
            try:
                decision = router.resolve(model.name, endpoint)
            except GatewayError:
                continue
            for provider, plan in decision.candidates:
                key = (provider.name, endpoint.name, plan)
                if key in done:
                    continue
                done.add(key)
                _check(config, provider, plan, endpoint, decision, found)
    return [f"{file}: {path}: {message}" for (file, path), message in found.items()]


def _variables(config: Config, decision: Any) -> dict[str, Any]:
    m = decision.model
    return {"model": m.name, "upstream_model": m.upstream_name, "request_id": "req_" + "0" * 24, "rid": "0" * 24,
            "created": 1777300000,
            "max_output_tokens": m.max_output_tokens or config.settings.default_max_output_tokens}


def _check(config: Config, provider: Provider, plan: Any, endpoint: Any, decision: Any,
           found: dict[tuple[str, str], str]) -> None:
    wire = config.wire_of(provider)
    op = wire.operations[plan.operation]
    variables = _variables(config, decision)
    streams = endpoint.streams and (op.stream is not None or op.passthrough)
    bodies: list[dict[str, Any]] = []
    for sample, request in _samples("requests", endpoint.name):
        for stream in (False, True) if streams else (False,):
            body = {**request, "model": decision.model.name, **({"stream": True} if stream else {})}
            what = (f"the sample {endpoint.name} request '{sample}'{' (streamed)' if stream else ''} "
                    f"for model '{decision.model.name}' via provider '{provider.name}'")
            try:
                bodies = [body]
                for name in plan.adapters:
                    bodies.append(config.adapters[name].render_request(bodies[-1], variables))
                op.build_request(bodies[-1], orjson.dumps(bodies[-1]), variables)
                if stream and op.stream is not None:
                    op.start_stream(bodies[-1], variables)
            except GatewayError:
                continue  # a deliberate refusal of this request
            except Exception as exc:  # noqa: BLE001  any other failure is a template's mistake
                _report(found, provider, wire, op, exc, what)
    samples: dict[str, dict[str, Any]] = {"chat": {"messages": [{"role": "user", "content": "hi"}]}, "responses": {"input": "hi"},
             "completion": {"prompt": "hi"}, "image": {"prompt": "hi"}}
    plain = samples.get(endpoint.name)
    if plain is None:
        return
    body = {**plain, "model": decision.model.name}
    if streams:
        _check_streams(config, provider, plan, endpoint, decision, {**body, "stream": True}, variables, found)
    for sample, upstream in _samples("responses", provider.wire, plan.operation):
        what = (f"the sample {provider.wire} {plan.operation} answer '{sample}' on {endpoint.path} via provider "
                f"'{provider.name}'")
        try:
            bodies = [body]
            for name in plan.adapters:
                bodies.append(config.adapters[name].render_request(bodies[-1], variables))
            client, usage = op.translate_response(upstream, bodies[-1], variables)
            doc = upstream if client is None else client
            for level in range(len(plan.adapters) - 1, -1, -1):
                doc, _ = config.adapters[plan.adapters[level]].translate_response(doc, bodies[level], variables, usage)
            undefined = find_undefined(doc)
            if undefined is not None:
                _report(found, provider, wire, op, None, what, f"response.{undefined[0]}", undefined[1])
        except GatewayError:
            continue
        except Exception as exc:  # noqa: BLE001  any other failure is a template's mistake
            _report(found, provider, wire, op, exc, what)


class _Recorded:
    """A recorded provider stream played back as the upstream (nothing is awaited for real)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def chunks(self) -> Any:
        for i in range(0, len(self._data), 512):
            yield self._data[i:i + 512]

    def close(self) -> None:
        pass


def _drive(agen: Any) -> None:
    """Run an async generator that never suspends to its end, without an event loop (load_config may run
    inside one: uvicorn's factory)."""
    while True:
        step = agen.__anext__()
        try:
            step.send(None)
        except StopIteration:
            continue
        except StopAsyncIteration:
            return
        step.close()
        raise RuntimeError("the stream waited for something while replaying a recorded sample")


def _check_streams(config: Config, provider: Provider, plan: Any, endpoint: Any, decision: Any,
                   body: dict[str, Any], variables: dict[str, Any], found: dict[tuple[str, str], str]) -> None:
    """Each recorded stream of the wire operation through the stream chain the endpoint would run."""
    from gateway.proxy.forwarding import Forwarder
    from gateway.proxy.streaming import StreamFailed

    wire = config.wire_of(provider)
    op = wire.operations[plan.operation]
    forwarder = Forwarder(config, pool=None)  # type: ignore[arg-type]  # nothing is sent
    for sample, data in _stream_samples(provider.wire, plan.operation):
        what = (f"the sample {provider.wire} {plan.operation} stream '{sample}' on {endpoint.path} via provider "
                f"'{provider.name}'")
        try:
            bodies = [body]
            for name in plan.adapters:
                bodies.append(config.adapters[name].render_request(bodies[-1], variables))
            call = forwarder._stream_chain(provider.name, _Recorded(data), plan, op, bodies, variables, decision)
            _drive(call.frames())
            call.end()
        except StreamFailed as exc:  # the provider's own error event is deliberate; one raised over a crash is not
            cause = exc.__context__
            if cause is not None and not isinstance(cause, GatewayError) and isinstance(cause, Exception):
                _report(found, provider, wire, op, cause, what)
        except GatewayError:
            continue
        except Exception as exc:  # noqa: BLE001  any other failure is a template's mistake
            _report(found, provider, wire, op, exc, what)


@cache
def _stream_samples(wire: str, operation: str) -> tuple[tuple[str, bytes], ...]:
    folder = SAMPLES / "streams" / wire / operation
    return tuple((p.stem, p.read_bytes()) for p in sorted(folder.glob("*.sse")))


def _report(found: dict[tuple[str, str], str], provider: Provider, wire: Any, op: Any, exc: Exception | None,
            what: str, out_path: str = "", undefined: str = "") -> None:
    path = template_path(exc).lstrip(".") if exc is not None else f"{op.where.lstrip('.')}.{out_path}"
    file = wire.source or provider.source
    if ": " in path:  # an adapter's leaf: "gateway/adapters/<name>.yaml: operation...."
        file, path = path.split(": ", 1)
    path = path or op.where.lstrip(".")
    if exc is not None:
        message = f"{exc}" if str(exc) else type(exc).__name__
    else:
        message = f"renders an undefined value ({undefined})"
    key = (file, path)
    if key not in found:
        found[key] = f"template fails at run time: {message}, on {what}"

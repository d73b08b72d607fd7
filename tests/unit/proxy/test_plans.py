"""Plans: how an endpoint serves a model of a kind through the operations a wire offers (gateway.proxy.endpoints),
and the router's decision per (model, endpoint): the candidates, primary then fallback, each with its plan
(gateway.proxy.routing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import Config
from gateway.errors import BadRequest, NotFound
from gateway.proxy.endpoints import ENDPOINTS, Plan, native_endpoint, native_path
from gateway.proxy.routing import Router
from tests.support.tiny_config import tiny_config

EVERYTHING = {"chat", "responses", "completion", "image"}   # what the openai wire offers
CHAT_ONLY = {"chat"}                                         # the anthropic wire
CHAT_AND_IMAGE = {"chat", "image"}                           # the gemini wire


@pytest.mark.parametrize("endpoint, kind, operations, plan", [
    # native: the kind's own operation, no adapters
    ("chat", "chat", EVERYTHING, Plan("chat")),
    ("responses", "responses", EVERYTHING, Plan("responses")),
    ("completion", "completion", EVERYTHING, Plan("completion")),
    ("image", "image", CHAT_AND_IMAGE, Plan("image")),
    # a chat model on /v1/responses: the Responses API where the wire has it, else through chat
    ("responses", "chat", EVERYTHING, Plan("responses")),
    ("responses", "chat", CHAT_ONLY, Plan("chat", ("responses_via_chat",))),
    # a Responses-only model on chat, and text generations wrapped into chat
    ("chat", "responses", EVERYTHING, Plan("responses", ("chat_via_responses",))),
    ("completion", "chat", CHAT_ONLY, Plan("chat", ("text_via_chat",))),
    ("completion", "responses", EVERYTHING, Plan("responses", ("text_via_chat", "chat_via_responses"))),
])
def test_the_plan_for_a_kind_through_a_wire(endpoint: str, kind: str, operations: set[str], plan: Plan) -> None:
    assert ENDPOINTS[endpoint].plan(kind, operations) == plan


@pytest.mark.parametrize("endpoint, kind, operations", [
    ("chat", "image", EVERYTHING),          # an image model does not chat
    ("image", "chat", EVERYTHING),
    ("chat", "responses", CHAT_ONLY),       # a Responses-only model needs a wire with responses
    ("image", "image", CHAT_ONLY),
    ("chat", "speech", EVERYTHING),         # a kind no endpoint serves
    ("completion", "completion", CHAT_ONLY),
])
def test_no_plan_when_the_wire_cannot_serve_the_kind(endpoint: str, kind: str, operations: set[str]) -> None:
    assert ENDPOINTS[endpoint].plan(kind, operations) is None


def test_each_kind_has_one_native_endpoint() -> None:
    assert {kind: native_path(kind) for kind in ("chat", "responses", "completion", "image", "speech", "video")} == {
        "chat": "/v1/chat/completions", "responses": "/v1/responses", "completion": "/v1/text/generations",
        "image": "/v1/images/generations", "speech": "/v1/audio/speech", "video": ""}
    assert native_endpoint("video") is None   # a kind no endpoint serves yet
    assert native_endpoint("image") is ENDPOINTS["image"]


# --------------------------------------------------------------------------- the router


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return tiny_config(tmp_path_factory.mktemp("tiny") / "root")


@pytest.fixture(scope="module")
def router(config: Config) -> Router:
    return Router(config)


def _plans(router: Router, model: str, endpoint: str) -> list[tuple[str, Plan]]:
    return [(p.name, plan) for p, plan in router.resolve(model, ENDPOINTS[endpoint]).candidates]


def test_primary_then_fallback_each_with_its_own_plan(router: Router) -> None:
    # chatty (chat only) first; full (openai wire) as the fallback speaks the Responses API natively
    assert _plans(router, "a-chat", "chat") == [("chatty", Plan("chat")), ("full", Plan("chat"))]
    assert _plans(router, "a-chat", "responses") == [("chatty", Plan("chat", ("responses_via_chat",))),
                                                     ("full", Plan("responses"))]
    assert _plans(router, "a-chat", "completion") == [("chatty", Plan("chat", ("text_via_chat",))),
                                                      ("full", Plan("chat", ("text_via_chat",)))]


def test_a_decision_names_the_model_and_endpoint(router: Router, config: Config) -> None:
    decision = router.resolve("o-resp", ENDPOINTS["chat"])
    assert decision.model is config.models["o-resp"] and decision.endpoint is ENDPOINTS["chat"]
    assert _plans(router, "o-resp", "chat") == [("full", Plan("responses", ("chat_via_responses",)))]
    assert router.resolve("o-resp", ENDPOINTS["chat"]) is decision, "decisions are made once"


def test_a_model_on_an_endpoint_it_cannot_use_is_a_400_naming_its_own(router: Router) -> None:
    with pytest.raises(BadRequest, match="o-img' is a image model and cannot be used on /v1/chat/completions: "
                                         "use /v1/images/generations"):
        router.resolve("o-img", ENDPOINTS["chat"])
    with pytest.raises(BadRequest, match="o-text' is a completion model .*: use /v1/text/generations"):
        router.resolve("o-text", ENDPOINTS["responses"])


@pytest.mark.parametrize("model", ["nobody", "A-CHAT"])
def test_unknown_models_are_404(router: Router, model: str) -> None:
    with pytest.raises(NotFound, match=f"model '{model}' not found among enabled models"):
        router.resolve(model, ENDPOINTS["chat"])


@pytest.mark.parametrize("model, reason", [("o-off", "retired"), ("o-voice", "no endpoint for speech")])
def test_disabled_models_are_404_with_their_reason(router: Router, model: str, reason: str) -> None:
    with pytest.raises(NotFound, match=f"model '{model}' is disabled: {reason}"):
        router.resolve(model, ENDPOINTS["chat"])


@pytest.mark.parametrize("model", [None, "", 5, ["a-chat"]])
def test_a_missing_or_non_string_model_is_a_400(router: Router, model: object) -> None:
    with pytest.raises(BadRequest, match="'model' is required and must be a string"):
        router.resolve(model, ENDPOINTS["chat"])


def test_every_enabled_model_has_a_decision_on_its_native_endpoint(router: Router, config: Config) -> None:
    for m in config.enabled_models:
        endpoint = native_endpoint(m.kind)
        assert endpoint is not None, m.name
        assert router.resolve(m.name, endpoint).candidates, m.name


def test_the_tiny_root_is_what_the_tests_think(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "r")
    assert {p: cfg.providers[p].wire for p in cfg.providers} == {"chatty": "anthropic", "full": "openai"}
    chatty, full = (set(cfg.wire_of(cfg.providers[p]).operations) for p in ("chatty", "full"))
    assert CHAT_ONLY <= chatty and not (EVERYTHING - CHAT_ONLY) & chatty   # chat, and its own API's operations
    assert EVERYTHING <= full

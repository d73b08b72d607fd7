"""Validate payloads against the official provider API specs.

    from tests.support.fakes.specs import validate
    errors = validate("openai", "CreateChatCompletionRequest", body)   # [] when valid

Spec files are vendored in ``tests/specs/`` (origin, commit, date and licence of each in
``tests/specs/SOURCE``); ``$GATEWAY_SPECS_DIR`` points elsewhere, e.g. at a newer copy. A file
over ~1 MB is stored gzipped (``openapi.json.gz``) and read as such when the plain one is absent.
Each document is loaded once, normalised (PROVIDERS.md section 0) and registered as one
JSON-Schema resource; one Draft 2020-12 validator per (spec, schema, strict) is built on
first use and cached, so validating on every fake request is cheap.

Normalisations (see PROVIDERS.md section 0):
  * all specs: OpenAPI-3.0 ``nullable: true`` -> ``type: [T, "null"]`` (+ ``null`` in
    ``enum``); without a ``type`` the schema becomes ``anyOf: [schema, {"type": "null"}]``.
  * openai: ``oneOf`` -> ``anyOf`` (ambiguous unions, e.g. Responses input items).
  * gemini: ``model`` dropped from ``GenerateContentRequest.required`` (it is the URL path).
  * gemini, strict mode (default): ``additionalProperties: false`` on every object schema
    with ``properties`` (``unevaluatedProperties: false`` where ``allOf``/``anyOf`` sit
    beside them), so typos such as ``generationConfg`` fail like on the real API.
  * gemini: every camelCase field also accepts its snake_case spelling (the API takes
    proto field names too; google-genai sends e.g. ``parameters_json_schema``).
  * gemini: ``Status`` gains the ``status`` string (gRPC status name) that the REST error
    envelope ``{"error": {"code", "message", "status", "details"}}`` carries.
  * anthropic: the vendored snapshot predates a few fields the current API and SDK
    accept; they are added (see ``_patch_anthropic``): request ``output_config``
    (effort + json_schema format), ``cache_control``, ``inference_geo``, thinking
    ``{"type": "adaptive"}``, and stop reason ``model_context_window_exceeded``.
"""

from __future__ import annotations

import copy
import gzip
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

try:  # orjson is ~5x faster on the 3.4 MB OpenAI document
    import orjson

    def _parse_json(data: bytes) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover
    import json

    def _parse_json(data: bytes) -> Any:
        return json.loads(data)


def _load_json(path: Path) -> Any:
    return _parse_json(path.read_bytes())


__all__ = [
    "SPEC_FILES",
    "SpecError",
    "assert_valid",
    "check",
    "format_error",
    "load_spec",
    "schema_names",
    "specs_dir",
    "validate",
    "validator_for",
]

SPEC_FILES: dict[str, str] = {
    "openai": "openai/openapi.json",
    "anthropic": "anthropic/openapi.json",
    "gemini": "gemini/openapi-v1beta.json",
}
# xAI has no REST spec; it is OpenAI-compatible.
_ALIASES = {"xai": "openai"}

_REPO_ROOT = Path(__file__).resolve().parents[3]

# Keys whose values are data (not sub-schemas): never normalise inside them.
_DATA_KEYS = frozenset({"example", "examples", "default", "const", "enum", "x-oaiMeta", "discriminator"})
# Keys whose values map names to sub-schemas.
_SCHEMA_MAP_KEYS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_COMPOSITION = ("allOf", "anyOf", "oneOf")

_lock = threading.RLock()


def specs_dir() -> Path:
    """Directory holding ``openai/``, ``anthropic/``, ``gemini/`` and ``examples/``."""
    env = os.environ.get("GATEWAY_SPECS_DIR")
    return Path(env) if env else _REPO_ROOT / "tests" / "specs"


def _canon(spec: str) -> str:
    spec = _ALIASES.get(spec, spec)
    if spec not in SPEC_FILES:
        raise ValueError(f"unknown spec {spec!r}; expected one of {sorted(SPEC_FILES)}")
    return spec


# --------------------------------------------------------------------------- normalising
def _fix_nullable(node: dict) -> dict:
    nullable = node.pop("nullable")
    if nullable is not True:
        return node
    if "type" in node:
        t = node["type"]
        if isinstance(t, list):
            if "null" not in t:
                node["type"] = [*t, "null"]
        elif t != "null":
            node["type"] = [t, "null"]
        if isinstance(node.get("enum"), list) and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        return node
    # No type ($ref / anyOf / oneOf / bare): wrap the assertion part.
    keep_meta = {k: node.pop(k) for k in ("description", "title", "default", "deprecated") if k in node}
    if isinstance(node.get("enum"), list) and None not in node["enum"]:
        node["enum"] = [*node["enum"], None]
    if not node:  # {"nullable": true} alone accepts anything anyway
        return keep_meta
    return {**keep_meta, "anyOf": [node, {"type": "null"}]}


_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")


def _snake(name: str) -> str:
    return _CAMEL.sub(lambda m: "_" + m.group(1).lower(), name)


def _add_snake_aliases(out: dict) -> None:
    """Gemini (proto JSON) accepts lower_snake_case as well as lowerCamelCase field names."""
    props = out["properties"]
    for name in list(props):
        alias = _snake(name)
        if alias != name and alias not in props:
            props[alias] = props[name]
    required = out.get("required")
    if isinstance(required, list):
        camel = [r for r in required if _snake(r) != r]
        if camel:
            out["required"] = [r for r in required if _snake(r) == r]
            if not out["required"]:
                del out["required"]
            out.setdefault("allOf", []).extend(
                {"anyOf": [{"required": [r]}, {"required": [_snake(r)]}]} for r in camel
            )


def _normalise(
    node: Any, *, one_of_to_any_of: bool, strict_objects: bool, snake_aliases: bool = False
) -> Any:
    kw = {
        "one_of_to_any_of": one_of_to_any_of,
        "strict_objects": strict_objects,
        "snake_aliases": snake_aliases,
    }
    if isinstance(node, list):
        return [_normalise(v, **kw) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict = {}
    for k, v in node.items():
        if k in _DATA_KEYS:
            out[k] = v
        elif k in _SCHEMA_MAP_KEYS and isinstance(v, dict):
            out[k] = {name: _normalise(sub, **kw) for name, sub in v.items()}
        else:
            out[k] = _normalise(v, **kw)
    if snake_aliases and isinstance(out.get("properties"), dict):
        _add_snake_aliases(out)
    if one_of_to_any_of and "oneOf" in out:
        if "anyOf" in out:
            out.setdefault("allOf", []).append({"anyOf": out.pop("oneOf")})
        else:
            out["anyOf"] = out.pop("oneOf")
    if isinstance(out.get("nullable"), bool):
        out = _fix_nullable(out)
    if strict_objects and isinstance(out.get("properties"), dict) and "additionalProperties" not in out:
        if any(c in out for c in _COMPOSITION):
            out.setdefault("unevaluatedProperties", False)
        else:
            out["additionalProperties"] = False
    return out


def _patch_anthropic(schemas: dict) -> None:
    """Add request/response fields the current API accepts but the snapshot lacks."""
    cmp = schemas.get("CreateMessageParams")
    if cmp:
        props = cmp.setdefault("properties", {})
        props.setdefault(
            "output_config",
            {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "effort": {
                        "type": ["string", "null"],
                        "enum": ["low", "medium", "high", "xhigh", "max", None],
                    },
                    "format": {
                        "anyOf": [
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["type", "schema"],
                                "properties": {
                                    "type": {"const": "json_schema"},
                                    "schema": {"type": "object"},
                                },
                            },
                            {"type": "null"},
                        ]
                    },
                },
            },
        )
        props.setdefault(
            "cache_control",
            {
                "anyOf": [
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["type"],
                        "properties": {"type": {"const": "ephemeral"}, "ttl": {"enum": ["5m", "1h"]}},
                    },
                    {"type": "null"},
                ]
            },
        )
        props.setdefault("inference_geo", {"type": ["string", "null"]})
    thinking = schemas.get("ThinkingConfigParam")
    if thinking is not None:
        adaptive = {
            "type": "object",
            "additionalProperties": False,
            "required": ["type"],
            "properties": {
                "type": {"const": "adaptive"},
                "display": {"type": ["string", "null"], "enum": ["summarized", "omitted", None]},
            },
        }
        schemas["ThinkingConfigAdaptive"] = adaptive
        union = "oneOf" if "oneOf" in thinking else "anyOf"
        if union in thinking:
            thinking[union].append({"$ref": "#/components/schemas/ThinkingConfigAdaptive"})
    stop = schemas.get("StopReason")
    if stop and "model_context_window_exceeded" not in stop.get("enum", []):
        stop["enum"] = [*stop["enum"], "model_context_window_exceeded"]


def _patch_gemini(schemas: dict) -> None:
    req = schemas.get("GenerateContentRequest")
    if req and "model" in req.get("required", []):
        req["required"] = [r for r in req["required"] if r != "model"]
        if not req["required"]:
            del req["required"]
    # The REST error envelope {"error": Status} carries the gRPC status name, which the
    # proto-derived Status schema lacks (matters in strict mode).
    status = schemas.get("Status")
    if status is not None:
        status.setdefault("properties", {}).setdefault("status", {"type": "string"})


@cache
def _raw_spec(spec: str) -> Any:
    path = specs_dir() / SPEC_FILES[spec]
    if path.is_file():
        return _load_json(path)
    packed = path.with_name(path.name + ".gz")
    if packed.is_file():
        return _parse_json(gzip.decompress(packed.read_bytes()))
    raise FileNotFoundError(f"spec file {path} (or {packed.name}) not found in {specs_dir()}")


@cache
def load_spec(spec: str, strict: bool = True) -> dict:
    """The normalised spec document (do not mutate). ``strict`` only matters for gemini."""
    spec = _canon(spec)
    with _lock:
        doc = copy.deepcopy(_raw_spec(spec)) if spec == "anthropic" else _raw_spec(spec)
        if spec == "anthropic":
            _patch_anthropic(doc["components"]["schemas"])
        doc = _normalise(
            doc,
            one_of_to_any_of=(spec == "openai"),
            strict_objects=(spec == "gemini" and strict),
            snake_aliases=(spec == "gemini"),
        )
        if spec == "gemini":
            _patch_gemini(doc["components"]["schemas"])
        return doc


@cache
def _registry(spec: str, strict: bool) -> tuple[Registry, str]:
    uri = f"urn:gateway-spec:{spec}{':strict' if strict else ''}"
    resource = Resource.from_contents(load_spec(spec, strict), default_specification=DRAFT202012)
    return Registry().with_resource(uri, resource).crawl(), uri


def schema_names(spec: str) -> list[str]:
    return sorted(load_spec(_canon(spec))["components"]["schemas"])


@cache
def _validator(spec: str, schema: str, strict: bool) -> Draft202012Validator:
    registry, uri = _registry(spec, strict)
    if schema not in load_spec(spec, strict)["components"]["schemas"]:
        raise KeyError(f"{spec} spec has no components/schemas/{schema}")
    return Draft202012Validator({"$ref": f"{uri}#/components/schemas/{schema}"}, registry=registry)


def validator_for(spec: str, schema: str, *, strict: bool = True) -> Draft202012Validator:
    """The cached validator (``strict`` only changes gemini)."""
    spec = _canon(spec)
    with _lock:
        return _validator(spec, schema, strict if spec == "gemini" else True)


# --------------------------------------------------------------------------- errors
def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_DISCRIMINATORS = ("type", "role", "object")


def _is_discriminator_failure(e: ValidationError) -> bool:
    return (
        e.validator in ("const", "enum")
        and len(e.relative_path) == 1
        and e.relative_path[0] in _DISCRIMINATORS
    )


def _is_kind_failure(e: ValidationError) -> bool:
    return e.validator == "type" and len(e.relative_path) == 0


def _pick(error: ValidationError) -> ValidationError | str:
    """For a failed union (anyOf/oneOf), the error of the branch the payload was meant for.

    A branch is "meant" when its discriminator (``type``/``role``/``object`` const) and JSON
    type match; among those the one with the fewest errors wins. When no branch's
    discriminator matches, a synthetic message listing the allowed values is returned."""
    branches: dict[Any, list[ValidationError]] = {}
    for e in error.context:
        key = e.relative_schema_path[0] if e.relative_schema_path else None
        branches.setdefault(key, []).append(e)
    meant = [
        errs
        for errs in branches.values()
        if not any(_is_discriminator_failure(e) or _is_kind_failure(e) for e in errs)
    ]
    if meant:
        errs = min(meant, key=len)
        return best_match(errs) or errs[0]
    disc = [e for errs in branches.values() for e in errs if _is_discriminator_failure(e)]
    if disc:
        field = disc[0].relative_path[0]
        allowed: list = []
        for e in disc:
            if e.relative_path[0] != field:
                continue
            vals = [e.validator_value] if e.validator == "const" else list(e.validator_value)
            allowed.extend(v for v in vals if v not in allowed)
        inst = error.instance.get(field) if isinstance(error.instance, dict) else None
        path = error.json_path + ("." + field if field.isidentifier() else f"[{field!r}]")
        return f"{path}: {_short(inst)} is not one of {_short(allowed, 400)}"
    return best_match(error.context) or error


def _deepest(error: ValidationError) -> ValidationError | str:
    for _ in range(30):
        if not error.context:
            break
        nxt = _pick(error)
        if isinstance(nxt, str):
            return nxt
        error = nxt
    return error


@dataclass(frozen=True)
class SpecError:
    path: str  # JSON path, e.g. "$.messages[0].role"
    message: str
    keyword: str  # failing JSON-Schema keyword: required, additionalProperties, enum, type, ...

    @property
    def field(self) -> str:
        """Dotted path without the leading ``$.`` (``messages[0].role``)."""
        return self.path[2:] if self.path.startswith("$.") else ("" if self.path == "$" else self.path)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _describe(error: ValidationError) -> SpecError:
    err = _deepest(error)
    if isinstance(err, str):
        path, _, msg = err.partition(": ")
        return SpecError(path, msg, "enum")
    path = err.json_path
    validator = str(err.validator)
    if validator in ("additionalProperties", "unevaluatedProperties"):
        msg = err.message
        # jsonschema: "Additional properties are not allowed ('x' was unexpected)"
        if "(" in msg:
            msg = "unknown field" + msg[msg.index("(") - 1 :]
        validator = "additionalProperties"
    elif validator in ("enum", "const"):
        msg = f"{_short(err.instance)} is not one of {_short(err.validator_value, 200)}"
    elif validator == "type":
        msg = f"{_short(err.instance)} is not of type {err.validator_value!r}"
    else:
        msg = err.message
        if len(msg) > 300:
            msg = msg[:297] + "..."
    return SpecError(path, msg, validator)


def format_error(error: ValidationError) -> str:
    return str(_describe(error))


@cache
def _dispatch_map(spec: str, schema: str, strict: bool) -> dict[Any, str] | None:
    """For a union of ``$ref``s keyed by a single-valued ``type`` (stream events, content
    blocks), map each ``type`` value to its branch schema, so a payload is validated against
    its own branch only (much faster than trying ~50 branches; same errors)."""
    schemas = load_spec(spec, strict)["components"]["schemas"]
    node = schemas.get(schema) or {}
    union = node.get("anyOf") or node.get("oneOf")
    if not union or any(k in node for k in ("properties", "allOf", "type", "required")):
        return None
    mapping: dict[Any, str] = {}
    for branch in union:
        ref = branch.get("$ref") if isinstance(branch, dict) else None
        extra = [
            k for k in branch if k != "$ref" and not k.startswith("x-") and k not in ("description", "title")
        ]
        if not ref or extra or not ref.startswith("#/components/schemas/"):
            return None
        name = ref.rsplit("/", 1)[1]
        t = (schemas.get(name) or {}).get("properties", {}).get("type", {})
        values = [t["const"]] if "const" in t else t.get("enum")
        if not values or len(values) != 1 or values[0] in mapping:
            return None
        mapping[values[0]] = name
    return mapping


def check(spec: str, schema: str, payload: Any, *, strict: bool = True) -> list[SpecError]:
    """Structured errors (path, message, keyword); ``[]`` when ``payload`` is valid."""
    spec = _canon(spec)
    strict = strict if spec == "gemini" else True
    if isinstance(payload, dict):
        with _lock:
            mapping = _dispatch_map(spec, schema, strict)
        branch = mapping.get(payload.get("type")) if mapping else None
        if branch is not None:
            return check(spec, branch, payload, strict=strict)
    v = validator_for(spec, schema, strict=strict)
    errors = sorted(v.iter_errors(payload), key=lambda e: (list(map(str, e.absolute_path)), str(e.validator)))
    return [_describe(e) for e in errors]


def validate(spec: str, schema: str, payload: Any, *, strict: bool = True) -> list[str]:
    """Human-readable ``"path: message"`` errors; ``[]`` when ``payload`` is valid."""
    return [str(e) for e in check(spec, schema, payload, strict=strict)]


def assert_valid(spec: str, schema: str, payload: Any, *, strict: bool = True) -> None:
    errors = validate(spec, schema, payload, strict=strict)
    if errors:
        raise AssertionError(f"{spec} {schema} payload invalid:\n  " + "\n  ".join(errors))


def validate_many(spec: str, schema: str, payloads: Iterable[Any], *, strict: bool = True) -> list[str]:
    out: list[str] = []
    for i, p in enumerate(payloads):
        out.extend(f"[{i}] {e}" for e in validate(spec, schema, p, strict=strict))
    return out

"""gateway.envsubst: `${VAR}` / `${VAR:-default}` in config strings."""

from __future__ import annotations

import pytest

from gateway.envsubst import MissingVariable, substitute, substitute_tree, without_default


def test_values_defaults_and_empty_values() -> None:
    env = {"HOST": "api.example", "EMPTY": ""}
    assert substitute("https://${HOST}/v1", env) == "https://api.example/v1"
    assert substitute("${PORT:-8000}", env) == "8000"
    assert substitute("${HOST:-fallback}", env) == "api.example"  # a value wins over the default
    assert substitute("${EMPTY:-used}", env) == "used"             # an empty value counts as unset
    assert substitute("${KEY:-}", env) == ""                      # an explicit empty default
    assert substitute("${A:-x}-${B:-y}", env) == "x-y"


def test_a_variable_without_value_or_default_is_an_error_naming_it() -> None:
    with pytest.raises(MissingVariable, match="DEEPSEEK_API_KEY is not set and has no default"):
        substitute("Bearer ${DEEPSEEK_API_KEY}", {})
    with pytest.raises(MissingVariable, match="EMPTY"):
        substitute("${EMPTY}", {"EMPTY": ""})


def test_text_that_is_not_a_variable_stays() -> None:
    env = {"X": "1"}
    for text in ("$X", "${}", "${1BAD}", "{X}", "${X", "price: $5", "${X:default}"):
        assert substitute(text, env) == text
    assert substitute("${X}${X}", env) == "11"
    assert substitute("$${X}", env) == "$1"  # no escape syntax: the variable is still substituted


def test_a_default_may_hold_url_punctuation_but_not_a_brace() -> None:
    assert substitute("${U:-https://h:8443/v1?a=b&c=d}", {}) == "https://h:8443/v1?a=b&c=d"
    assert substitute("${U:-a}b}", {}) == "ab}"


def test_substitute_tree_reaches_every_string_and_collects_every_error_with_its_path() -> None:
    doc = {"base_url": "${BASE:-https://x}", "n": 3, "flag": True,
           "headers": {"X-Key": "${KEY}"}, "list": ["a", "${MISSING}", None]}
    errors: list[str] = []
    out = substitute_tree(doc, {}, "", errors)
    assert out["base_url"] == "https://x" and out["n"] == 3 and out["flag"] is True and out["list"][2] is None
    assert errors == ["headers.X-Key: environment variable KEY is not set and has no default",
                      "list[1]: environment variable MISSING is not set and has no default"]
    assert out["headers"]["X-Key"] == "${KEY}"  # left as written: the loader reports, nothing half-substituted
    assert doc["base_url"] == "${BASE:-https://x}", "the parsed document is not modified"


def test_without_default_lists_the_variables_a_deployment_must_set() -> None:
    doc = {"base_url": "${DEEPSEEK_BASE_URL:-https://api.deepseek.com}", "api_key": "${DEEPSEEK_API_KEY}",
           "headers": {"X-Org": "${ORG}-${TEAM:-core}"}, "list": ["${A}", 5, None], "empty": "${E:-}"}
    assert without_default(doc) == {"DEEPSEEK_API_KEY", "ORG", "A"}
    assert without_default("plain") == set() and without_default(None) == set() and without_default({}) == set()

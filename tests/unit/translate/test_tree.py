"""gateway.translate.tree: YAML trees with Jinja leaves compiled once into evaluators — native values,
text, literals, `omit`, `$if`, `$switch`, macros through `map_tree`, and the errors a bad template gives at
start-up — in the locked-down environment of gateway.translate.environment."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from gateway.translate.environment import make_environment
from gateway.translate.omit import OMIT
from gateway.translate.tree import MACROS_VAR, TreeError, compile_tree, new_context

ENV = make_environment()


def render(tree: Any, macros: dict[str, Any] | None = None, **variables: Any) -> Any:
    compiled = {name: compile_tree(t, ENV, f"macros.{name}") for name, t in (macros or {}).items()}
    return compile_tree(tree, ENV)(new_context(ENV, {**variables, MACROS_VAR: compiled}))


def test_a_whole_expression_keeps_its_python_type() -> None:
    body = {"n": 2, "t": 0.5, "stop": ["a"], "obj": {"k": None}, "flag": False}
    assert render("{{ body.n }}", body=body) == 2
    assert render("{{ body.t * 2 }}", body=body) == 1.0
    assert render("{{ body.stop }}", body=body) == ["a"]
    assert render("{{ body.obj }}", body=body) == {"k": None}
    assert render("{{ body.flag }}", body=body) is False
    assert render("  {{ body.n }}\n", body=body) == 2  # surrounding whitespace does not make it text


def test_mixed_strings_render_as_text_and_plain_values_are_literals() -> None:
    assert render("chatcmpl-{{ rid }}", rid="abc") == "chatcmpl-abc"
    assert render("{{ a }}{{ b }}", a=1, b=2) == "12"  # two expressions: text
    assert render("plain {not jinja}") == "plain {not jinja}"
    assert render({"n": 3, "f": 1.5, "none": None, "yes": True}) == {"n": 3, "f": 1.5, "none": None, "yes": True}


def test_omit_drops_keys_and_list_items() -> None:
    tree = {"model": "{{ model }}", "seed": "{{ body.seed if body.seed is not none else omit }}",
            "stop": ["{{ 'x' }}", "{{ omit }}", "y"]}
    assert render(tree, model="m", body={"seed": None}) == {"model": "m", "stop": ["x", "y"]}
    assert render(tree, model="m", body={"seed": 7})["seed"] == 7
    assert render("{{ omit }}") is OMIT and not OMIT


def test_if_drops_a_whole_mapping() -> None:
    tree = {"config": {"$if": "{{ body.t is defined }}", "temperature": "{{ body.t }}"}, "keep": 1}
    assert render(tree, body={"t": 0.2}) == {"config": {"temperature": 0.2}, "keep": 1}
    assert render(tree, body={}) == {"keep": 1}
    assert render([{"$if": "{{ false }}", "a": 1}, {"$if": "{{ 1 }}", "b": 2}]) == [{"b": 2}]


def test_switch_picks_a_branch_by_value_else_the_default_else_nothing() -> None:
    tree = {"tool_choice": {"$switch": "{{ body.choice }}", "auto": {"type": "auto"},
                            "none": {"type": "none"}, "$default": {"type": "tool", "name": "{{ body.choice }}"}}}
    assert render(tree, body={"choice": "auto"}) == {"tool_choice": {"type": "auto"}}
    assert render(tree, body={"choice": "weather"}) == {"tool_choice": {"type": "tool", "name": "weather"}}
    no_default = {"x": {"$switch": "{{ body.v }}", "1": "one", "True": "yes"}}
    assert render(no_default, body={"v": 1}) == {"x": "one"}      # keys compare as text
    assert render(no_default, body={"v": True}) == {"x": "yes"}
    assert render(no_default, body={"v": 2}) == {}


def test_map_tree_applies_a_macro_with_item_and_index_and_restores_them() -> None:
    macros = {"part": {"i": "{{ index }}", "text": "{{ item.text if item.text else omit }}",
                       "inner": "{{ item.subs | map_tree('sub') }}"},
              "sub": "{{ item ~ '@' ~ index }}"}
    items = [{"text": "a", "subs": ["x", "y"]}, {"text": "", "subs": []}]
    out = render({"parts": "{{ items | map_tree('part') }}", "after": "{{ item }}"}, macros, items=items, item="outer")
    assert out == {"parts": [{"i": 0, "text": "a", "inner": ["x@0", "y@1"]}, {"i": 1, "inner": []}],
                   "after": "outer"}
    assert render("{{ none | map_tree('sub') }}", macros) == []


def test_map_tree_drops_items_its_macro_omits() -> None:
    macros = {"text_only": "{{ item.text if item.type == 'text' else omit }}"}
    parts = [{"type": "text", "text": "a"}, {"type": "image"}, {"type": "text", "text": "b"}]
    assert render("{{ parts | map_tree('text_only') }}", macros, parts=parts) == ["a", "b"]


def test_an_unknown_macro_names_itself() -> None:
    with pytest.raises(TreeError, match="map_tree\\('nope'\\): no such macro"):
        render("{{ [1] | map_tree('nope') }}", {})


def test_bad_templates_fail_at_compile_time_with_their_path() -> None:
    with pytest.raises(TreeError) as err:
        compile_tree({"a": {"b": ["ok", "{{ body. }}"]}}, ENV)
    assert err.value.path == "a.b[1]" and "does not compile" in str(err.value)
    with pytest.raises(TreeError, match=r"a\.\$unless: unknown directive"):
        compile_tree({"a": {"$unless": "{{ x }}", "b": 1}}, ENV)
    with pytest.raises(TreeError) as err:
        compile_tree({"a": "{{ x | no_such_filter }}"}, ENV)
    assert err.value.path == "a"


def test_undefined_names_are_errors_not_empty_strings() -> None:
    with pytest.raises(UndefinedError):
        render("id-{{ missing }}")
    with pytest.raises(UndefinedError):
        render("{{ missing.field }}")
    # a whole expression hands the strict Undefined itself back: any use of it (text, JSON) is the error
    bare = render("{{ body.absent }}", body={})
    with pytest.raises(UndefinedError):
        str(bare)


def test_a_key_of_parsed_json_wins_over_a_dict_method() -> None:
    # a provider field named like a dict method (`items`, `values`) is the field
    assert render("{{ resp.items }}", resp={"items": [1, 2]}) == [1, 2]
    assert render("{{ resp.get('x', 3) }}", resp={}) == 3  # the method when there is no such key
    assert render("{{ s.lower() }}", s="ABC") == "abc"


def test_the_sandbox_refuses_python_internals() -> None:
    with pytest.raises(SecurityError):
        render("{{ body.__class__.__subclasses__() }}", body={})
    with pytest.raises(UndefinedError):
        render("{{ range(3) }}")  # no globals beyond omit, none, true, false

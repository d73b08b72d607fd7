"""`gateway config validate` / `render` / `serve` on the shipped config and on broken copies of it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.cli import main
from tests.support import REPO, config_env
from tests.support.gateway_server import copy_root


def run_validate(root: Path, capsys, monkeypatch, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    for k, v in (env or config_env()).items():
        monkeypatch.setenv(k, v)
    code = main(["--root", str(root), "config", "validate"])
    return code, capsys.readouterr().out.strip().splitlines()


def edit_yaml(path: Path, fn) -> None:
    doc = yaml.safe_load(path.read_text())
    fn(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def test_shipped_config_is_valid(capsys, monkeypatch) -> None:
    code, out = run_validate(REPO, capsys, monkeypatch)
    assert code == 0, out
    assert out[0].startswith("OK:")


def test_console_script_validates(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "--root", str(REPO), "config", "validate"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK:")


BROKEN = {
    "unknown kind": (
        "config/models.yaml", lambda d: d["models"]["gpt-4o-mini"].update(kind="chatty"),
        "config/models.yaml: models.gpt-4o-mini.kind: 'chatty' is not one of"),
    "disabled without reason": (
        "config/models.yaml", lambda d: d["models"]["gpt-4o-mini"].update(enabled=False),
        "config/models.yaml: models.gpt-4o-mini: 'reason' is a required property"),
    "shadowed pattern": (
        "config/routing.yaml", lambda d: d["routes"][0]["match"].insert(1, "gpt-4o*"),
        "config/routing.yaml: routes[0].match[1]: 'gpt-4o*' can never match: 'gpt-*' of an earlier route"),
    "pattern matching nothing": (
        "config/routing.yaml", lambda d: d["routes"][0]["match"].append("mistral-*"),
        "'mistral-*' matches no model in config/models.yaml"),
    "missing provider": (
        "config/routing.yaml", lambda d: d["routes"][1].update(fallback="vertex"),
        "config/routing.yaml: routes[1].fallback: no provider 'vertex' in providers.d/"),
    "bad base url": (
        "providers.d/anthropic.yaml", lambda d: d.update(base_url="api.anthropic.com"),
        "providers.d/anthropic.yaml: base_url: 'api.anthropic.com' is not an http:// or https:// URL"),
    "unknown provider field": (
        "providers.d/xai.yaml", lambda d: d.update(timeout=5),
        "providers.d/xai.yaml: <root>: unknown field 'timeout' — did you mean 'timeout_ms'?"),
    "template syntax": (
        "providers.d/wire/anthropic.yaml",
        lambda d: d["operations"]["chat"]["request"].update(system="{{ body.messages | }}"),
        "providers.d/wire/anthropic.yaml: operations.chat.request.system: template does not compile"),
    "unknown filter": (
        "providers.d/wire/gemini.yaml",
        lambda d: d["operations"]["chat"]["let"].update(system_text="{{ body.messages | shout }}"),
        "providers.d/wire/gemini.yaml: operations.chat.let.system_text: template does not compile: No filter named 'shout'"),
    "missing price": (
        "pricing.d/openai.yaml", lambda d: d["models"].pop("gpt-4o-mini"),
        "config/models.yaml: models.gpt-4o-mini: enabled but has no price in pricing.d/"),
    "price for unknown model": (
        "pricing.d/xai.yaml", lambda d: d["models"].update({"grok-99": {"input": "1", "output": "2"}}),
        "pricing.d/xai.yaml: models.grok-99: no such model in config/models.yaml"),
    "float price": (
        "pricing.d/xai.yaml", lambda d: d["models"][next(iter(d["models"]))].update(input=0.2),
        "is not of type 'string'"),
    "wire without chat op": (
        "providers.d/wire/gemini.yaml", lambda d: d["operations"].update(image=d["operations"].pop("chat")),
        "provider 'gemini' (wire 'gemini') cannot serve this chat model on /v1/chat/completions"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_config_reports_file_path_message(case: str, tmp_path: Path, capsys, monkeypatch) -> None:
    file, fn, expected = BROKEN[case]
    root = copy_root(tmp_path)
    edit_yaml(root / file, fn)
    code, out = run_validate(root, capsys, monkeypatch)
    assert code == 1
    assert any(expected in line for line in out), "\n".join(out)


def test_every_error_reported_at_once(tmp_path: Path, capsys, monkeypatch) -> None:
    root = copy_root(tmp_path)
    for case in ("unknown kind", "missing provider", "bad base url", "template syntax"):
        file, fn, _ = BROKEN[case]
        edit_yaml(root / file, fn)
    (root / "pricing.d" / "google.yaml").write_text("models: [unclosed\n")
    code, out = run_validate(root, capsys, monkeypatch)
    assert code == 1
    for case in ("unknown kind", "missing provider", "bad base url", "template syntax"):
        assert any(BROKEN[case][2] in line for line in out), case
    assert any(line.startswith("pricing.d/google.yaml: line ") and "invalid YAML" in line for line in out)


def test_env_var_without_default(tmp_path: Path, capsys, monkeypatch) -> None:
    root = copy_root(tmp_path)
    (root / "providers.d" / "mistral.yaml").write_text('wire: openai\nbase_url: "${MISTRAL_BASE_URL}"\n')
    monkeypatch.delenv("MISTRAL_BASE_URL", raising=False)
    code, out = run_validate(root, capsys, monkeypatch)
    assert code == 1
    assert "providers.d/mistral.yaml: base_url: environment variable MISTRAL_BASE_URL is not set and has no default" in out


def test_openai_compatible_provider_is_one_yaml_file(tmp_path: Path, capsys, monkeypatch) -> None:
    """An operator adds DeepSeek with YAML only: provider file, route, catalogue entry, price."""
    root = copy_root(tmp_path)
    (root / "providers.d" / "deepseek.yaml").write_text(
        'wire: openai\nbase_url: "${DEEPSEEK_BASE_URL:-https://api.deepseek.com/v1}"\napi_key: "${DEEPSEEK_API_KEY:-}"\n')
    edit_yaml(root / "config" / "routing.yaml", lambda d: d["routes"].append({"match": ["deepseek-*"], "primary": "deepseek"}))
    edit_yaml(root / "config" / "models.yaml", lambda d: d["models"].update(
        {"deepseek-chat": {"kind": "chat", "enabled": True, "owned_by": "deepseek", "max_output_tokens": 8192}}))
    (root / "pricing.d" / "deepseek.yaml").write_text(
        'models:\n  deepseek-chat: {input: "0.28", cached_input: "0.028", output: "0.42"}\n')
    code, out = run_validate(root, capsys, monkeypatch)
    assert code == 0, out


def test_serve_refuses_invalid_config(tmp_path: Path) -> None:
    root = copy_root(tmp_path)
    edit_yaml(root / "config" / "routing.yaml", lambda d: d["routes"][1].update(primary="nope"))
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "--root", str(root), "serve", "--port", "1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "refusing to start" in proc.stderr
    assert "config/routing.yaml: routes[1].primary: no provider 'nope' in providers.d/" in proc.stderr


def test_render_previews_upstream_request(tmp_path: Path, capsys, monkeypatch) -> None:
    for k, v in config_env().items():
        monkeypatch.setenv(k, v)
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"model": "claude-sonnet-4-5", "messages": [
        {"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}], "stop": "END"}))
    assert main(["--root", str(REPO), "config", "render", str(req)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["provider"] == "anthropic"
    assert out["url"].endswith("/v1/messages")
    assert out["body"]["system"] == "Be terse."
    assert out["body"]["stop_sequences"] == ["END"]
    assert out["body"]["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


# -- silent failures that are errors now (issue 16) ------------------------------------------------------

def test_duplicate_yaml_key_is_an_error_naming_both_lines(tmp_path: Path, capsys, monkeypatch) -> None:
    """A second `gpt-4o-mini:` entry used to replace the first silently (and disabled the model)."""
    root = copy_root(tmp_path)
    models = root / "config" / "models.yaml"
    lines = models.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.strip().startswith("gpt-4o-mini:")) + 1
    models.write_text("\n".join(lines) + "\n  gpt-4o-mini: {kind: chat, enabled: false, reason: old entry}\n")
    second = len(lines) + 1
    code, out = run_validate(root, capsys, monkeypatch)
    assert code == 1
    assert (f"config/models.yaml: models.gpt-4o-mini: duplicate key 'gpt-4o-mini' at lines {first} and {second}"
            in "\n".join(out)), out


@pytest.mark.parametrize(("file", "edit", "expected"), [
    ("providers.d/wire/anthropic.yaml",
     lambda d: d["operations"]["chat"]["request"].update(system="{{ system_prompt }}"),
     ("providers.d/wire/anthropic.yaml: operations.chat.request.system: template fails at run time: "
      "renders an undefined value ('system_prompt' is undefined)")),
    ("providers.d/wire/gemini.yaml",
     lambda d: d["operations"]["chat"]["let"].update(extra="{{ undefined_thing | upper }}"),
     "providers.d/wire/gemini.yaml: operations.chat.let.extra: template fails at run time: 'undefined_thing' is undefined"),
    ("providers.d/wire/gemini.yaml",
     lambda d: d["operations"]["chat"]["response"].update(system_fingerprint="{{ resp.when }}"),
     ("providers.d/wire/gemini.yaml: operations.chat.response.system_fingerprint: template fails at run time: "
      "renders an undefined value ('dict object' has no attribute 'when')")),
    ("providers.d/xai.yaml",
     lambda d: d["overrides"].update(chat={"path": "{{ api_root }}/chat/completions"}),
     "providers.d/xai.yaml: operations.chat.path: template fails at run time: 'api_root' is undefined"),
], ids=["request-leaf", "let", "response", "provider-override"])
def test_template_that_fails_on_a_sample_request_is_an_error(file: str, edit, expected: str, tmp_path: Path,
                                                              capsys, monkeypatch) -> None:
    """Validated "OK" before, then every call through the wire answered 400 'StrictUndefined'."""
    root = copy_root(tmp_path)
    edit_yaml(root / file, edit)
    code, out = run_validate(root, capsys, monkeypatch)
    assert code == 1
    assert any(line.startswith(expected) for line in out), "\n".join(out)


def test_one_typo_is_one_error_and_the_follow_on_ones_are_counted(tmp_path: Path, capsys, monkeypatch) -> None:
    """A typo in one model's kind used to print 100-180 lines ('no price', 'matches no model' for everything)."""
    root = copy_root(tmp_path)
    edit_yaml(root / "config" / "models.yaml", lambda d: d["models"]["gpt-4o-mini"].update(kind="chta"))
    code, out = run_validate(root, capsys, monkeypatch)
    assert code == 1
    assert len(out) == 2, "\n".join(out)
    assert out[0].startswith("config/models.yaml: models.gpt-4o-mini.kind: 'chta' is not one of")
    assert out[0].endswith("— did you mean 'chat'?")
    assert out[1].startswith("(and ") and "more error(s) not shown: they only follow from the ones above" in out[1]
    assert int(out[1].split()[1]) > 50


def test_unparsable_price_file_hides_only_its_own_follow_ons(tmp_path: Path, capsys, monkeypatch) -> None:
    root = copy_root(tmp_path)
    (root / "pricing.d" / "xai.yaml").write_text("models: [unclosed\n")
    edit_yaml(root / "config" / "routing.yaml", lambda d: d["routes"][1].update(fallback="vertex"))
    code, out = run_validate(root, capsys, monkeypatch)
    assert code == 1
    assert out[0].startswith("pricing.d/xai.yaml: line ")
    assert "config/routing.yaml: routes[1].fallback: no provider 'vertex' in providers.d/" in out
    assert not any("no price" in line for line in out), out
    assert out[-1].startswith("(and ")


@pytest.mark.parametrize(("file", "edit", "expected"), [
    ("providers.d/xai.yaml", lambda d: d.update(wire="opeani"),
     ("providers.d/xai.yaml: wire: no wire format 'opeani' (expected providers.d/wire/opeani.yaml) "
      "— did you mean 'openai'?")),
    ("config/routing.yaml", lambda d: d["routes"][3].update(primary="xia"),
     "config/routing.yaml: routes[3].primary: no provider 'xia' in providers.d/ — did you mean 'xai'?"),
    ("providers.d/xai.yaml", lambda d: d.update(timeout_msec=5),
     "providers.d/xai.yaml: <root>: unknown field 'timeout_msec' — did you mean 'timeout_ms'?"),
    ("pricing.d/xai.yaml", lambda d: d["models"].update({"grok-3-mni": {"input": "1", "output": "2"}}),
     "pricing.d/xai.yaml: models.grok-3-mni: no such model in config/models.yaml — did you mean 'grok-3-mini'?"),
], ids=["wire", "provider", "field", "model"])
def test_a_typo_gets_the_closest_name(file: str, edit, expected: str, tmp_path: Path, capsys, monkeypatch) -> None:
    root = copy_root(tmp_path)
    edit_yaml(root / file, edit)
    code, out = run_validate(root, capsys, monkeypatch)
    assert code == 1
    assert expected in out, "\n".join(out)


def test_value_rules_are_stated_in_words(tmp_path: Path, capsys, monkeypatch) -> None:
    root = copy_root(tmp_path)
    edit_yaml(root / "pricing.d" / "xai.yaml", lambda d: d["models"]["grok-3-mini"].update(input="0,30"))
    code, out = run_validate(root, capsys, monkeypatch)
    assert code == 1
    line = next(line for line in out if line.startswith("pricing.d/xai.yaml: models.grok-3-mini.input:"))
    assert "'0,30' is not a non-negative decimal string such as \"0.15\"" in line
    assert "^" not in line and "[0-9]" not in line, line


def test_a_bad_value_from_the_environment_names_the_variable(tmp_path: Path, capsys, monkeypatch) -> None:
    """`GATEWAY_PORT=eighty` was blamed on config/gateway.yaml alone."""
    code, out = run_validate(REPO, capsys, monkeypatch, config_env(GATEWAY_PORT="eighty"))
    assert code == 1
    assert out == [("config/gateway.yaml: server.port: 'eighty' is not a whole number such as 8000 "
                    "(the value comes from the environment variable GATEWAY_PORT)")]


def test_serve_warns_once_per_provider_without_a_key(tmp_path: Path, redis_env: dict[str, str]) -> None:
    """It started silently, listed every model and answered 503 to each."""
    import os
    import signal
    import time

    from tests.support.gateway_server import free_port

    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(config_env(), **redis_env)
    del env["XAI_API_KEY"]
    env["GEMINI_API_KEY"] = ""
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--root", str(copy_root(tmp_path)), "serve",
                                 "--port", str(free_port()), "--workers", "2"], env=env, stdout=subprocess.DEVNULL,
                                stderr=err)
        try:
            deadline = time.monotonic() + 60
            while log.read_text().count("Application startup complete") < 2:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    text = log.read_text()
    for provider, var in (("xai", "XAI_API_KEY"), ("gemini", "GEMINI_API_KEY")):
        lines = [line for line in text.splitlines() if f"provider '{provider}' has no API key" in line]
        assert len(lines) == 1, text
        assert "warning" in lines[0].lower() and f"answer 503 until you set {var}" in lines[0]
    assert "provider 'openai' has no API key" not in text


# -- the CLI as the README promises it (issue 16 item 9) -------------------------------------------------

def test_validate_json(tmp_path: Path, capsys, monkeypatch) -> None:
    for k, v in config_env().items():
        monkeypatch.setenv(k, v)
    assert main(["config", "validate", "--json", "--root", str(REPO)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["errors"] == [] and doc["summary"].startswith("OK:") and len(doc["version"]) == 16
    root = copy_root(tmp_path)
    edit_yaml(root / "config" / "routing.yaml", lambda d: d["routes"][1].update(fallback="vertex"))
    assert main(["config", "validate", "--json", "--root", str(root)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    assert "config/routing.yaml: routes[1].fallback: no provider 'vertex' in providers.d/" in doc["errors"]


def test_root_after_the_subcommand_wins(tmp_path: Path, capsys, monkeypatch) -> None:
    for k, v in config_env().items():
        monkeypatch.setenv(k, v)
    assert main(["--root", str(tmp_path), "config", "validate", "--root", str(REPO)]) == 0
    assert capsys.readouterr().out.startswith("OK:")
    assert main(["--root", str(REPO), "config", "validate"]) == 0  # before it, as before
    capsys.readouterr()
    assert main(["config", "validate", "--root", str(tmp_path)]) == 1
    assert "no config/ folder here" in capsys.readouterr().out


def test_serve_help_gives_meanings_and_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, default in (("--host", "127.0.0.1"), ("--port", "8000"), ("--workers", "1"), ("--root", "GATEWAY_ROOT")):
        assert option in text and default in text, (option, text)
    assert "address to listen on" in text and "worker processes" in text


def test_read_only_commands_work_with_a_provider_variable_unset(tmp_path: Path, capsys, monkeypatch,
                                                               redis_env: dict[str, str]) -> None:
    """They need Redis, not provider URLs: a variable without default unset in this shell must not stop them."""
    root = copy_root(tmp_path)
    (root / "providers.d" / "mistral.yaml").write_text(
        'wire: openai\nbase_url: "${MISTRAL_BASE_URL}"\napi_key: "${MISTRAL_API_KEY}"\n')
    monkeypatch.delenv("MISTRAL_BASE_URL", raising=False)
    for k, v in redis_env.items():
        monkeypatch.setenv(k, v)
    assert main(["accounts", "create", "--login", f"ro-{tmp_path.name}@example.com", "--json",
                 "--root", str(root)]) == 0
    account = json.loads(capsys.readouterr().out)["id"]
    assert main(["accounts", "list", "--json", "--root", str(root)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert any(a["id"] == account for a in (listed["data"] if isinstance(listed, dict) else listed))
    assert main(["keys", "list", account, "--json", "--root", str(root)]) == 0
    capsys.readouterr()
    assert main(["history", account, "--json", "--root", str(root)]) == 0
    capsys.readouterr()
    assert main(["config", "validate", "--root", str(root)]) == 1  # the full check still names it
    assert "MISTRAL_BASE_URL is not set" in capsys.readouterr().out


def test_stream_mapping_that_fails_on_a_recorded_stream_is_an_error(tmp_path: Path, capsys, monkeypatch) -> None:
    root = copy_root(tmp_path)
    edit_yaml(root / "providers.d" / "wire" / "anthropic.yaml", lambda d: d["operations"]["chat"]["stream"]["events"][
        "message_start"].update(emit="{{ [{'delta': {'role': assistant_role | upper}}] }}"))
    code, out = run_validate(root, capsys, monkeypatch)
    assert code == 1
    assert any(line.startswith("providers.d/wire/anthropic.yaml: operations.chat.stream.events.message_start.emit: "
                               "template fails at run time:") and "chat stream '" in line for line in out), out

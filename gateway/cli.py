"""The `gateway` command: serve, config validate, config render; the operator's accounts, keys, fx and
history commands live in gateway.cli_accounts."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import orjson

from gateway.archive.cli import register as register_archive
from gateway.cli_accounts import register as register_accounts
from gateway.proxy.endpoints import ENDPOINTS


def _root(args: argparse.Namespace) -> str:
    return args.root or os.environ.get("GATEWAY_ROOT") or "."


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.http.serve import serve

    return serve(_root(args), args.host, args.port, args.workers)


def cmd_validate(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config
    from gateway.config.warnings import config_warnings

    try:
        config = load_config(_root(args))
    except ConfigError as exc:
        if args.json:
            print(orjson.dumps({"ok": False, "errors": exc.errors}, option=orjson.OPT_INDENT_2).decode())
        else:
            for line in exc.errors:
                print(line)
        return 1
    summary = (f"OK: {len(config.models)} models ({len(config.enabled_models)} enabled), {len(config.routes)} "
               f"routes, {len(config.providers)} providers, {len(config.prices)} prices")
    warnings = config_warnings(config)
    if args.json:
        print(orjson.dumps({"ok": True, "errors": [], "summary": summary, "version": config.version,
                            "models": len(config.models), "enabled_models": len(config.enabled_models),
                            "routes": len(config.routes), "providers": len(config.providers),
                            "prices": len(config.prices), "warnings": warnings},
                           option=orjson.OPT_INDENT_2).decode())
        return 0
    print(summary)
    for warning in warnings:
        print(f"warning: {warning}")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    """SIGHUP to the running `gateway serve` (its pid file), then wait for the outcome it records in Redis."""
    from gateway.cli_reload import reload_command

    return reload_command(_root(args), args.timeout, args.json)


def cmd_render(args: argparse.Namespace) -> int:
    """Print the upstream request an OpenAI request would become (to preview a template change)."""
    from gateway.config import ConfigError, load_config
    from gateway.errors import GatewayError
    from gateway.proxy.forwarding import Forwarder
    from gateway.proxy.request_body import parse_json_body
    from gateway.proxy.routing import Router

    try:
        config = load_config(_root(args))
    except ConfigError as exc:
        print("\n".join(exc.errors), file=sys.stderr)
        return 1
    try:
        raw = sys.stdin.buffer.read() if args.file in (None, "-") else open(args.file, "rb").read()
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    router = Router(config)
    forwarder = Forwarder(config, pool=None)  # type: ignore[arg-type]  # renders only, sends nothing
    try:
        body = parse_json_body(raw)
        if args.model:
            body["model"] = args.model
        decision = router.resolve(body.get("model"), ENDPOINTS[args.endpoint])
        candidates = [c for c in decision.candidates if not args.provider or c[0].name == args.provider]
        if not candidates:
            print(f"error: provider '{args.provider}' is not a candidate for this model", file=sys.stderr)
            return 1
        provider, plan = candidates[0]
        op = config.wire_of(provider).operations[plan.operation]
        _, req = forwarder.prepare(plan, op, body, orjson.dumps(body), forwarder.variables(decision, "req_render"))
    except GatewayError as exc:
        print(f"error {exc.status}: {exc.message}", file=sys.stderr)
        return 1
    out: dict[str, Any] = {"provider": provider.name, "plan": [*plan.adapters, plan.operation], "method": req.method,
                           "url": provider.base_url + req.path, "body": orjson.loads(req.body)}
    print(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Botech AI gateway")
    parser.add_argument("--root", help="config root holding config/, providers.d/, pricing.d/ (default: $GATEWAY_ROOT or .)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve", help="run the gateway",
        description="Serve the OpenAI-compatible API, the cabinet, the console and the admin API. Without "
                    "REDIS_URL an embedded redis-server is started under the data folder. The configuration is "
                    "checked first (the server refuses to start on an invalid one); SIGHUP or `gateway reload` "
                    "reloads it, SIGTERM stops gracefully.")
    serve.add_argument("--host", help="address to listen on (default: server.host in config/gateway.yaml, "
                                      "i.e. $GATEWAY_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default: server.port, i.e. $GATEWAY_PORT or 8000)")
    serve.add_argument("--workers", type=int,
                       help="worker processes, each with a listening socket of its own (default: server.workers, "
                            "i.e. $GATEWAY_WORKERS or 1)")
    serve.set_defaults(func=cmd_serve)

    reload = sub.add_parser("reload", help="re-read and check the config root and switch every worker to it "
                                           "(SIGHUP to the running `gateway serve`)")
    reload.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for the outcome (default 60)")
    reload.add_argument("--json", action="store_true", help="print the outcome as JSON")
    reload.set_defaults(func=cmd_reload)

    config = sub.add_parser("config", help="check or preview the configuration")
    csub = config.add_subparsers(dest="config_command", required=True)
    validate = csub.add_parser("validate", help="validate config/, providers.d/, pricing.d/")
    validate.add_argument("--json", action="store_true", help="print the outcome as one JSON document")
    validate.set_defaults(func=cmd_validate)
    render = csub.add_parser("render", help="print the upstream request for an OpenAI request (JSON file or stdin)")
    render.add_argument("file", nargs="?", help="request JSON file; '-' or nothing for stdin")
    render.add_argument("--model", help="override the request's model")
    render.add_argument("--provider", help="render for this candidate instead of the primary")
    render.add_argument("--endpoint", default="chat", choices=list(ENDPOINTS),
                        help="the client endpoint the request is sent to (default chat)")
    render.set_defaults(func=cmd_render)

    register_accounts(sub)
    register_archive(sub)
    _root_everywhere(parser)
    return parser


def _root_everywhere(parser: argparse.ArgumentParser) -> None:
    """`--root` after the subcommand too (`gateway config validate --root DIR`): every subcommand takes it,
    and when it is not given there the top-level value (or none) stands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                if not any("--root" in a.option_strings for a in child._actions):
                    child.add_argument("--root", default=argparse.SUPPRESS,
                                       help="config root holding config/, providers.d/, pricing.d/ "
                                            "(default: $GATEWAY_ROOT or .)")
                _root_everywhere(child)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for sub_args in ("root",):
        if getattr(args, sub_args, None) is None:
            setattr(args, sub_args, None)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

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

    try:
        config = load_config(_root(args))
    except ConfigError as exc:
        for line in exc.errors:
            print(line)
        return 1
    print(f"OK: {len(config.models)} models ({len(config.enabled_models)} enabled), {len(config.routes)} routes, "
          f"{len(config.providers)} providers, {len(config.prices)} prices")
    return 0


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

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(func=cmd_serve)

    config = sub.add_parser("config", help="check or preview the configuration")
    csub = config.add_subparsers(dest="config_command", required=True)
    validate = csub.add_parser("validate", help="validate config/, providers.d/, pricing.d/")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for sub_args in ("root",):
        if getattr(args, sub_args, None) is None:
            setattr(args, sub_args, None)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

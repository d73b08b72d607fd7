"""The operator's commands over the accounts service: `gateway accounts|keys|fx|history ...`.

Each command reads config/gateway.yaml (not the providers: a provider variable unset in this shell does not
matter), opens Redis (REDIS_URL, else the embedded server, which it stops afterwards
if it started it), runs one service call and prints either a human summary or, with `--json`, one JSON
document (money as exact decimal strings, USD with its RUB twin). An error is one line on stderr and
exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.store.accounts import Accounts

ACTOR = "cli"

# A command's body: given the service and the parsed arguments, what to print as JSON and as text.
Output = tuple[Any, str]
Body = Callable[["Accounts", argparse.Namespace], Awaitable[Output]]


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


def _load_config(root: str) -> Config:
    """Only config/gateway.yaml: these commands talk to Redis alone, so a provider's variable unset in this
    shell (a key the server has) must not stop them."""
    from gateway.config.load import load_settings

    return load_settings(root)


def _root(args: argparse.Namespace) -> str:
    return args.root or os.environ.get("GATEWAY_ROOT") or "."


def _run(args: argparse.Namespace, body: Body) -> int:
    from redis.exceptions import RedisError

    from gateway.config import ConfigError
    from gateway.money import MoneyError
    from gateway.store.accounts import ConflictError, InvalidInput, NotFoundError

    try:
        config = _load_config(_root(args))
    except ConfigError as exc:
        print("error: the configuration is invalid", file=sys.stderr)
        for line in exc.errors:
            print(line, file=sys.stderr)
        return 1
    try:
        doc, text = _with_redis(config, args, body)
    except (CommandError, NotFoundError, ConflictError, InvalidInput, MoneyError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    except RedisError as exc:
        print(f"error: Redis: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(text.rstrip("\n") + "\n")
    return 0


def _with_redis(config: Config, args: argparse.Namespace, body: Body) -> Output:
    from gateway.store.connection import embedded_redis_for

    try:
        embedded = embedded_redis_for(config)
    except (RuntimeError, OSError) as exc:
        raise CommandError(f"cannot start the embedded Redis: {exc}") from None
    try:
        return asyncio.run(_call(embedded.url if embedded else config.settings.redis_url, config, args, body))
    finally:
        if embedded is not None:
            embedded.stop()  # only stops a server this command started, never one `gateway serve` runs


async def _call(url: str, config: Config, args: argparse.Namespace, body: Body) -> Output:
    from gateway.archive.service import open_archive
    from gateway.store.accounts import Accounts
    from gateway.store.connection import async_client
    from gateway.store.keys import KeySpace
    from gateway.store.replicated import ReplicaAcks

    s = config.settings
    client = async_client(url, max_connections=4, connect_timeout_ms=s.redis_connect_timeout_ms,
                          command_timeout_ms=s.redis_command_timeout_ms)
    accounts = Accounts(client, KeySpace(s.redis_prefix), s.usd_rub_default, replica_acks=ReplicaAcks(
        s.redis_replica_acks, min(s.redis_replica_wait_ms, s.redis_command_timeout_ms // 2)))
    accounts.archive = open_archive(config)   # `gateway history` reads what Redis no longer keeps there
    try:
        return await body(accounts, args)
    finally:
        if accounts.archive is not None:
            accounts.archive.close()
        await client.aclose()


def _decimal(value: str, what: str) -> Decimal:
    from gateway.account_admin import decimal_of
    from gateway.money import MoneyError

    try:
        return decimal_of(value, what)
    except MoneyError as exc:
        raise CommandError(str(exc)) from None


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def _usd_rub(d: dict[str, Any], name: str) -> str:
    usd = d[f"{name}_usd"]
    return "-" if usd is None else f"{usd} USD ({d[f'{name}_rub']} RUB)"


def _time(d: dict[str, Any], field: str = "time") -> str:
    return str(d[field])[:19].replace("T", " ")


def _lines(pairs: Sequence[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k + ':':<{width + 1}} {v}" for k, v in pairs)


async def _money(acc: Accounts) -> Any:
    from gateway.account_admin import Money

    return Money(await acc.usd_rub(), exact=True)


# -- accounts --------------------------------------------------------------------------------------------


async def _account_create(acc: Accounts, args: argparse.Namespace) -> Output:
    from gateway.account_admin import account_doc

    view = await acc.create_account(args.login, "admin" if args.admin else "customer")
    return account_doc(view, await _money(acc)), view.id


async def _account_list(acc: Accounts, args: argparse.Namespace) -> Output:
    from gateway.account_admin import account_doc

    views, total = await acc.list_accounts(args.query or "", args.offset, args.limit)
    money = await _money(acc)
    docs = [account_doc(v, money) for v in views]
    rows = [(d["id"], d["login"], d["status"], d["role"], d["balance_usd"], d["spent_usd"], d["requests"],
             _time(d, "created_at")) for d in docs]
    text = _table(("ID", "LOGIN", "STATUS", "ROLE", "BALANCE USD", "SPENT USD", "REQUESTS", "CREATED"), rows)
    shown = f"{len(docs)} of {total}" if len(docs) < total else f"{total}"
    footer = f"{shown} account{'' if total == 1 else 's'}"
    if not docs:
        return docs, f"no accounts here ({total} in all)" if total else "no accounts"
    return docs, f"{text}\n{footer}"


def _account_text(d: dict[str, Any]) -> str:
    pairs: list[tuple[str, Any]] = [
        ("id", d["id"]), ("login", d["login"]), ("status", d["status"]), ("role", d["role"]),
        ("created", d["created_at"]), ("balance", _usd_rub(d, "balance")),
        ("credited", _usd_rub(d, "credited")), ("spent", _usd_rub(d, "spent")),
        ("spent this month", _usd_rub(d, "month_spent")), ("reserved", f"{d['reserved_usd']} USD"),
        ("requests", f"{d['requests']} ({d['month_requests']} this month)"),
    ]
    if "keys" in d:
        pairs.append(("keys", f"{d['keys']} ({d['active_keys']} active)"))
    pairs.append(("rate", f"1 USD = {d['usd_rub_rate']} RUB"))
    return _lines(pairs)


async def _account_show(acc: Accounts, args: argparse.Namespace) -> Output:
    from gateway.account_admin import account_doc

    view = await acc.account(args.account_id)
    keys = await acc.list_keys(args.account_id)
    doc = account_doc(view, await _money(acc)) | {"keys": len(keys),
                                                   "active_keys": sum(k.status == "ACTIVE" for k in keys)}
    return doc, _account_text(doc)


def _credit_text(doc: dict[str, Any], kind: str) -> str:
    a = doc["account"]
    who = f"{a['id']} ({a['login']})"
    if not doc["applied"]:
        head = (f"operation {doc['operation_id']} was already applied: nothing changed now "
                f"({_usd_rub(doc, 'amount')} asked)")
    elif kind == "topup":
        head = f"credited {_usd_rub(doc, 'amount')} to {who}"
    else:
        head = f"corrected {who} by {_usd_rub(doc, 'amount')}"
    return f"{head}\nbalance: {_usd_rub(a, 'balance')}  (rate 1 USD = {doc['usd_rub_rate']} RUB)"


async def _account_topup(acc: Accounts, args: argparse.Namespace) -> Output:
    from gateway.account_admin import topup

    usd = _decimal(args.usd, "--usd") if args.usd is not None else None
    rub = _decimal(args.rub, "--rub") if args.rub is not None else None
    done = await topup(acc, args.account_id, usd=usd, rub=rub, reason=args.reason or "",
                       operation_id=args.operation_id or "", actor=ACTOR)
    doc = done.doc(exact=True)
    return doc, _credit_text(doc, "topup")


async def _account_correct(acc: Accounts, args: argparse.Namespace) -> Output:
    from gateway.account_admin import correct

    done = await correct(acc, args.account_id, _decimal(args.usd, "--usd"), args.reason,
                         operation_id=args.operation_id or "", actor=ACTOR)
    doc = done.doc(exact=True)
    return doc, _credit_text(doc, "correction")


def _account_status(status: str) -> Body:
    async def body(acc: Accounts, args: argparse.Namespace) -> Output:
        from gateway.account_admin import account_doc

        view = await acc.set_account_status(args.account_id, status)
        return account_doc(view, await _money(acc)), f"{view.id} ({view.login}) is {view.status}"

    return body


def _read_password() -> str:
    """The new password from a prompt (typed twice) or, when stdin is not a terminal, its first line;
    never from argv, where other users and the shell history would see it."""
    import getpass

    if sys.stdin.isatty():
        password = getpass.getpass("New password: ")
        if getpass.getpass("Repeat it: ") != password:
            raise CommandError("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("no password given (type it at the prompt or pipe it on stdin)")
    return password


async def _account_set_password(acc: Accounts, args: argparse.Namespace) -> Output:
    from gateway.web.passwords import Passwords
    from gateway.web.sessions import Sessions

    view = await acc.account(args.account_id)
    await Passwords(acc.r, acc.k).set(view.id, _read_password())
    ended = await Sessions(acc.r, acc.k, 0).destroy_all(view.id)  # a new password logs out everywhere
    doc = {"id": view.id, "login": view.login, "role": view.role, "password_set": True, "sessions_ended": ended}
    return doc, f"password set for {view.id} ({view.login}, {view.role}); {ended} cabinet session(s) ended"


async def _account_ledger(acc: Accounts, args: argparse.Namespace) -> Output:
    from gateway.account_admin import ledger_doc

    await acc.account(args.account_id)
    money = await _money(acc)
    docs = [ledger_doc(e, money) for e in await acc.ledger_entries(args.account_id, args.limit)]
    rows = [(_time(d), d["kind"], d["amount_usd"], d["credited_after_usd"], d["actor"],
             d["operation_id"] or "", d["reason"]) for d in docs]
    text = _table(("TIME (UTC)", "KIND", "AMOUNT USD", "CREDITED USD", "BY", "OPERATION", "REASON"), rows)
    return docs, text if docs else "no ledger entries"


# -- exchange rate ---------------------------------------------------------------------------------------


async def _fx_set(acc: Accounts, args: argparse.Namespace) -> Output:
    from gateway.money import parse_rate

    rate = await acc.set_usd_rub(parse_rate(_decimal(args.usd_rub, "--usd-rub")))
    return {"usd_rub": str(rate)}, f"1 USD = {rate} RUB"


async def _fx_show(acc: Accounts, args: argparse.Namespace) -> Output:
    rate = await acc.usd_rub()
    return {"usd_rub": str(rate)}, f"1 USD = {rate} RUB"


# -- keys ------------------------------------------------------------------------------------------------


def _key_row(d: dict[str, Any]) -> tuple[Any, ...]:
    limit = "-" if d["monthly_limit_usd"] is None else d["monthly_limit_usd"]
    return (d["id"], d["prefix"], d["name"], d["status"], limit, d["month_spent_usd"], d["spent_usd"],
            ",".join(d["models"]) or "*", d["rpm"] or "-", d["tpm"] or "-")


_KEY_HEADERS = ("ID", "PREFIX", "NAME", "STATUS", "LIMIT/MONTH USD", "MONTH USD", "TOTAL USD", "MODELS",
                "RPM", "TPM")


async def _key_create(acc: Accounts, args: argparse.Namespace) -> Output:
    from gateway.account_admin import check_models, key_doc
    from gateway.money import usd_to_nano

    limit = usd_to_nano(_decimal(args.monthly_limit_usd, "--monthly-limit-usd")) \
        if args.monthly_limit_usd is not None else None
    if limit is not None and limit < 0:
        raise CommandError("--monthly-limit-usd must not be negative")
    models = check_models(args.models.split(",")) if args.models else []
    created = await acc.create_key(args.account_id, name=args.name or "", monthly_limit=limit, models=models,
                                   rpm=args.rpm, tpm=args.tpm)
    doc = key_doc(created.key, await _money(acc))
    # the one place the secret is ever printed: only its hash is stored
    text = _lines([("id", doc["id"]), ("prefix", doc["prefix"]), ("key", created.secret)]) + \
        "\nSave the key now: it is shown only this once."
    return {"id": doc["id"], "prefix": doc["prefix"], "key": created.secret} | doc, text


async def _key_list(acc: Accounts, args: argparse.Namespace) -> Output:
    from gateway.account_admin import key_doc

    money = await _money(acc)
    docs = [key_doc(k, money) for k in await acc.list_keys(args.account_id)]
    return docs, _table(_KEY_HEADERS, [_key_row(d) for d in docs]) if docs else "no keys"


async def _key_revoke(acc: Accounts, args: argparse.Namespace) -> Output:
    from gateway.account_admin import key_doc

    view = await acc.revoke_key(args.key_id)
    return key_doc(view, await _money(acc)), f"{view.id} (prefix {view.prefix}) is {view.status}"


async def _key_update(acc: Accounts, args: argparse.Namespace) -> Output:
    from gateway.account_admin import check_limit, check_models, key_doc
    from gateway.money import usd_to_nano

    limit = usd_to_nano(_decimal(args.monthly_limit_usd, "--monthly-limit-usd")) \
        if args.monthly_limit_usd is not None else None
    check_limit("--monthly-limit-usd", limit)
    for name in ("rpm", "tpm"):
        check_limit(f"--{name}", getattr(args, name))
    models = check_models(args.models.split(",")) if args.models is not None else None
    view = await acc.update_key_limits(args.key_id, monthly_limit=limit, clear_limit=args.no_monthly_limit,
                                       models=models, rpm=args.rpm, tpm=args.tpm)
    doc = key_doc(view, await _money(acc))
    return doc, _table(_KEY_HEADERS, [_key_row(doc)])


# -- history ---------------------------------------------------------------------------------------------


async def _history(acc: Accounts, args: argparse.Namespace) -> Output:
    from gateway.account_admin import history_doc

    await acc.account(args.account_id)
    money = await _money(acc)
    docs = [history_doc(e, money) for e in await acc.history(args.account_id, args.limit, args.before)]
    rows = [(_time(d), d["key"], d["model"], d["provider"], d["endpoint"],
             d["status"] if "rejected" not in d else f"{d['status']} {d['rejected']}",
             d["tokens_in"], d["tokens_out"], d["cost_usd"], d["latency_ms"]) for d in docs]
    headers = ("TIME (UTC)", "KEY", "MODEL", "PROVIDER", "ENDPOINT", "STATUS", "IN", "OUT", "COST USD", "MS")
    return docs, _table(headers, rows) if docs else "no requests yet"


# -- the parser ------------------------------------------------------------------------------------------


def _stream_id(text: str) -> str:
    if not re.fullmatch(r"\d{1,20}(-\d{1,20})?", text):
        raise argparse.ArgumentTypeError("must be a history id such as 1767225600000-0")
    return text


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def register(sub: Any) -> None:
    """Add the `accounts`, `keys`, `fx` and `history` commands to the `gateway` parser's subcommands."""
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true",
                           help="print one JSON document (money as decimal strings)")

    def command(group: Any, name: str, body: Body, help_: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(name, help=help_, parents=[json_flag])
        p.set_defaults(func=lambda args: _run(args, body))
        return p

    accounts = sub.add_parser("accounts", help="customer accounts: create, list, show, topup, correct, "
                                               "block, set-password, ledger")
    asub = accounts.add_subparsers(dest="accounts_command", required=True)
    p = command(asub, "create", _account_create, "create an account; prints its id")
    p.add_argument("--login", required=True, help="the customer's email")
    p.add_argument("--admin", action="store_true", help="role admin instead of customer")
    p = command(asub, "list", _account_list, "list accounts, newest first")
    p.add_argument("--query", help="part of a login or id")
    p.add_argument("--offset", type=_count, default=0)
    p.add_argument("--limit", type=_positive_int, default=100)
    p = command(asub, "show", _account_show, "balance (USD and RUB), spend and keys of one account")
    p.add_argument("account_id")
    p = command(asub, "topup", _account_topup, "credit a positive amount in USD or RUB (at the current rate)")
    p.add_argument("account_id")
    amount = p.add_mutually_exclusive_group(required=True)
    amount.add_argument("--usd", metavar="AMOUNT")
    amount.add_argument("--rub", metavar="AMOUNT")
    p.add_argument("--reason", help="kept in the ledger")
    p.add_argument("--operation-id", help="idempotency key: the same id credits once")
    p = command(asub, "correct", _account_correct, "correct the balance by a signed USD amount")
    p.add_argument("account_id")
    p.add_argument("--usd", metavar="AMOUNT", required=True, help="may be negative, e.g. --usd=-2.5")
    p.add_argument("--reason", required=True)
    p.add_argument("--operation-id", help="idempotency key: the same id applies once")
    p = command(asub, "block", _account_status("BLOCKED"), "block an account: its keys get 403")
    p.add_argument("account_id")
    p = command(asub, "unblock", _account_status("ACTIVE"), "unblock an account")
    p.add_argument("account_id")
    p = command(asub, "set-password", _account_set_password,
                "set the cabinet password (read from a prompt or stdin, never from the command line)")
    p.add_argument("account_id")
    p = command(asub, "ledger", _account_ledger, "top-ups and corrections of one account, newest first")
    p.add_argument("account_id")
    p.add_argument("--limit", type=_positive_int, default=100)

    fx = sub.add_parser("fx", help="the USD→RUB exchange rate")
    fsub = fx.add_subparsers(dest="fx_command", required=True)
    p = command(fsub, "set", _fx_set, "set the USD→RUB rate")
    p.add_argument("--usd-rub", required=True, metavar="RATE")
    command(fsub, "show", _fx_show, "show the USD→RUB rate")

    keys = sub.add_parser("keys", help="API keys: create (the secret is shown once), list, revoke, update")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    p = command(ksub, "create", _key_create, "create a key; prints the bt_... secret exactly once")
    p.add_argument("account_id")
    p.add_argument("--name")
    p.add_argument("--monthly-limit-usd", metavar="X")
    p.add_argument("--models", metavar="PATTERN,...", help="allowed models, e.g. gpt-4o-mini,claude-*")
    p.add_argument("--rpm", type=_count, default=0, help="requests per minute (0 = unlimited)")
    p.add_argument("--tpm", type=_count, default=0, help="tokens per minute (0 = unlimited)")
    p = command(ksub, "list", _key_list, "keys of an account (never their secrets)")
    p.add_argument("account_id")
    p = command(ksub, "revoke", _key_revoke, "revoke a key for good")
    p.add_argument("key_id")
    p = command(ksub, "update", _key_update, "change a key's limits")
    p.add_argument("key_id")
    limit = p.add_mutually_exclusive_group()
    limit.add_argument("--monthly-limit-usd", metavar="X")
    limit.add_argument("--no-monthly-limit", action="store_true", help="remove the monthly limit")
    p.add_argument("--models", metavar="PATTERN,...", help="allowed models; '' allows every model")
    p.add_argument("--rpm", type=_count)
    p.add_argument("--tpm", type=_count)

    p = command(sub, "history", _history, "an account's requests, newest first")
    p.add_argument("account_id")
    p.add_argument("--limit", type=_positive_int, default=50)
    p.add_argument("--before", metavar="ID", type=_stream_id, help="page: entries older than this history id")

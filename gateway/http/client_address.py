"""Who the client is when the gateway sits behind a reverse proxy.

The TCP peer is the client unless the peer is a trusted proxy (`server.forwarded_allow_ips`, like
uvicorn's `forwarded_allow_ips`). Only then is the proxy's header read — the one configured in
`server.forwarded_header`, never both, since a proxy that maintains one passes the other through from the
client unchanged: `X-Forwarded-For` (with `X-Forwarded-Proto`) or RFC 7239 `Forwarded` (`for=`, `proto=`).
Proxies append what they see, so the list is walked from the right, skipping trusted proxies; the first
address that is not one is the client (anything the client itself put further left is ignored). When every
hop is trusted (or the set is `*`), the left-most entry is taken, as uvicorn does.

`ForwardedHeaders` puts the result into the ASGI scope (`client`, `scheme`), so `request.client` and
`request.base_url` downstream are the client's view. It wraps the web app only: the /v1 hot path uses no
client address and pays nothing for this.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, MutableMapping
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

HEADERS = {"x-forwarded-for": b"x-forwarded-for", "forwarded": b"forwarded"}
_SCHEMES = frozenset({"http", "https"})
_IDENTIFIER = re.compile(r"[A-Za-z0-9._-]{1,64}")   # RFC 7239 "unknown" and obfuscated ids ("_hidden")
# one `name=value` pair of a Forwarded element, the value a token or a quoted string; then `;`, `,` or the end
_PAIR = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s"]*)\s*([;,]|$)')

_GAP = re.compile(r"[\s,]*")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The peers whose forwarding headers are believed: addresses and networks, or `*` for every peer."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.everyone = False
        self.networks: list[Network] = []
        for entry in entries:
            entry = entry.strip()
            if entry == "*":
                self.everyone = True
            elif entry:
                self.networks.append(parse_network(entry))

    def __contains__(self, host: str) -> bool:
        if self.everyone:
            return True
        ip = _ip(host)
        return ip is not None and any(ip in net for net in self.networks)


def parse_network(entry: str) -> Network:
    """'10.0.0.0/8', '127.0.0.1', '::1', '[::1]' → a network; ValueError with a plain message otherwise."""
    text = entry.strip().removeprefix("[").removesuffix("]")
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"'{entry}' is not an IP address or network (e.g. 10.0.0.0/8)") from None
    if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped is not None \
            and net.prefixlen == 128:
        return ipaddress.ip_network(net.network_address.ipv4_mapped)
    return net


def resolve(scope: Scope, trusted: TrustedProxies, header: str = "x-forwarded-for") -> tuple[str, int, str] | None:
    """(host, port, scheme) of the client behind a trusted proxy, or None: the TCP peer is the client
    (it is not trusted, or it sent no forwarding header)."""
    peer = scope.get("client")
    if not peer or peer[0] not in trusted:
        return None
    name = HEADERS[header]
    values = [v for k, v in scope["headers"] if k == name]
    if not values:
        return None
    text = ", ".join(v.decode("latin-1") for v in values)   # repeated header lines are one list, in order
    if header == "forwarded":
        hops = _forwarded(text)
    else:
        scheme = _x_forwarded_proto(scope)
        hops = [(part, scheme) for part in text.split(",") if part.strip()]
    if not hops:
        return None
    chosen = None
    if not trusted.everyone:
        for hop in reversed(hops):   # parsed one by one: the walk usually stops at the last hop
            node = _node(*hop)
            if node[0] not in trusted:
                chosen = node
                break
    host, port, scheme = chosen or _node(*hops[0])
    return host, port, scheme or scope.get("scheme", "http")


def _x_forwarded_proto(scope: Scope) -> str:
    """The nearest proxy's word (the last entry of the last line): it holds for the whole chain."""
    proto = ""
    for k, v in scope["headers"]:
        if k == b"x-forwarded-proto":
            proto = v.decode("latin-1").rsplit(",", 1)[-1].strip().lower()
    return proto if proto in _SCHEMES else ""


def _forwarded(text: str) -> list[tuple[str, str]]:
    """The `for=` (and its `proto=`) of each element of an RFC 7239 Forwarded list. A malformed element
    is a hop of nobody we trust ('unknown'), so the walk from the right stops there at the latest."""
    elements: list[dict[str, str]] = [{}]
    pos, end = 0, len(text.rstrip())
    while pos < end:
        gap = _GAP.match(text, pos).end()   # type: ignore[union-attr]  # whitespace, empty #list elements
        if gap > pos:
            if "," in text[pos:gap] and elements[-1]:
                elements.append({})
            pos = gap
            continue
        m = _PAIR.match(text, pos)
        if m is None:
            elements[-1] = {"for": ""}
            comma = text.find(",", pos)   # resume at the next element (linear, whatever the garbage)
            if comma < 0:
                break
            elements.append({})
            pos = comma + 1
            continue
        name, value, sep = m.group(1).lower(), m.group(2), m.group(3)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        elements[-1].setdefault(name, value)
        if sep == ",":
            elements.append({})
        pos = m.end()
    hops = []
    for element in elements:
        if "for" in element:
            proto = element.get("proto", "").lower()
            hops.append((element["for"], proto if proto in _SCHEMES else ""))
    return hops


def _node(text: str, scheme: str) -> tuple[str, int, str]:
    """One hop: '192.0.2.1', '192.0.2.1:4711', '2001:db8::1', '[2001:db8::1]:4711', 'unknown', '_hidden'."""
    text = text.strip().strip('"')
    port = ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host = text
    ip = _ip(host)
    if ip is not None:
        host = str(ip)
    elif not _IDENTIFIER.fullmatch(host):
        host = "unknown"
    return host, int(port) if port.isdigit() and len(port) <= 5 else 0, scheme


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped   # a dual-stack socket's view of an IPv4 peer
    return ip


class ForwardedHeaders:
    """ASGI middleware: `scope['client']` and `scope['scheme']` as resolved above."""

    def __init__(self, app: ASGIApp, trusted: TrustedProxies, header: str) -> None:
        self.app = app
        self.trusted = trusted
        self.header = header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = resolve(scope, self.trusted, self.header)
            if found is not None:
                host, port, scheme = found
                scope["client"] = (host, port)
                scope["scheme"] = scheme
        await self.app(scope, receive, send)


def client_host(scope: MutableMapping[str, Any]) -> str:
    """The client's address for logs and throttles ('-' when unknown), after `ForwardedHeaders`."""
    client = scope.get("client")
    return client[0] if client else "-"

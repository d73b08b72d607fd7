"""Outbound HTTP proxies: which one a provider goes through, and the CONNECT tunnel to it.

The choice is made once, at config load: a provider's own `proxy:` (an empty string or `none` forces a
direct connection), else the environment the way curl, requests and httpx read it — `https_proxy` /
`HTTPS_PROXY` for https:// upstreams, `http_proxy` / `HTTP_PROXY` for http:// ones, then `all_proxy` /
`ALL_PROXY`, lower-case first, unless `no_proxy` / `NO_PROXY` names the host. NO_PROXY entries: `*` (no
proxy at all), a host name that also covers its subdomains (`example.com`, `.example.com`, `*.example.com`),
an IP address, a CIDR block (`10.0.0.0/8`, `fd00::/8`), each optionally with `:port`.

Only http:// proxies are spoken. An https:// upstream is reached through `CONNECT host:port` (TLS end to
end, the proxy sees only the tunnel); a plain http:// upstream is sent to the proxy in absolute form
(`POST http://host/path`), as curl does, since many proxies allow CONNECT to port 443 only. Credentials in
the proxy URL (`http://user:pass@proxy:3128`) go as `Proxy-Authorization: Basic`. SOCKS and https://
proxies are refused at config load: they would need a library (or TLS inside TLS) the gateway does not carry.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


class ProxyConfigError(ValueError):
    """A proxy setting the gateway cannot honour (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class ProxyURL:
    host: str
    port: int
    authorization: str      # the Proxy-Authorization value, or ""

    @property
    def address(self) -> str:
        """host:port, for messages and logs (never the credentials)."""
        return f"{self.host}:{self.port}"


def parse_proxy(url: str) -> ProxyURL:
    """An http:// proxy URL (a bare `host:port` means http://); raises ProxyConfigError."""
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme.startswith("socks"):
        raise ProxyConfigError(f"{scheme}:// proxies are not supported (only http:// proxies, through CONNECT)")
    if scheme != "http":
        raise ProxyConfigError(f"{scheme}:// proxies are not supported (only http:// proxies, through CONNECT)")
    try:
        port = parts.port or 80
    except ValueError:
        raise ProxyConfigError("the proxy URL has an invalid port") from None
    if not parts.hostname:
        raise ProxyConfigError("the proxy URL has no host")
    authorization = ""
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode("ascii")
    return ProxyURL(parts.hostname, port, authorization)


def _env(env: Mapping[str, str], name: str) -> tuple[str, str]:
    """The variable's value, lower-case spelling first, and the name it was found under."""
    for key in (name.lower(), name.upper()):
        value = env.get(key, "").strip()
        if value:
            return value, key
    return "", ""


def proxy_from_env(target_url: str, env: Mapping[str, str]) -> tuple[str, str]:
    """(proxy URL, the variable it came from) for a request to `target_url`, or ("", "") for direct."""
    parts = urlsplit(target_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    no_proxy, _ = _env(env, "no_proxy")
    if no_proxy and bypasses(host, port, no_proxy):
        return "", ""
    url, name = _env(env, f"{parts.scheme}_proxy")
    if not url:
        url, name = _env(env, "all_proxy")
    return url, name


def bypasses(host: str, port: int, no_proxy: str) -> bool:
    """True when a NO_PROXY list names this host (and port, where the entry gives one)."""
    host = host.lower().strip("[]").rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for entry in no_proxy.split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.removeprefix("*").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def _split_port(entry: str) -> tuple[str, int | None]:
    if entry.startswith("["):                                   # [::1]:8080
        addr, _, rest = entry[1:].partition("]")
        return addr, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:                                   # host:port (a bare IPv6 has several)
        name, _, port = entry.partition(":")
        if port.isdigit():
            return name, int(port)
    return entry, None


class ProxyError(OSError):
    """The proxy refused or broke the tunnel; the message is plain words for the client."""


async def open_tunnel(proxy: ProxyURL, host: str, port: int) -> socket.socket:
    """A connected socket to the proxy on which `CONNECT host:port` succeeded (the caller applies the
    deadline and puts TLS on top)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    sock: socket.socket | None = None
    last: OSError | None = None
    for family, type_, proto, _, addr in infos:
        candidate = socket.socket(family, type_, proto)
        candidate.setblocking(False)
        try:
            await loop.sock_connect(candidate, addr)
        except OSError as exc:
            candidate.close()
            last = exc
            continue
        except BaseException:
            candidate.close()
            raise
        sock = candidate
        break
    if sock is None:
        raise last or OSError("the proxy's name resolved to no address")
    try:
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if proxy.authorization:
            head += f"Proxy-Authorization: {proxy.authorization}\r\n"
        await loop.sock_sendall(sock, (head + "\r\n").encode("latin-1"))
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = await loop.sock_recv(sock, 4096)
            if not data:
                raise ProxyError(f"proxy {proxy.address} closed the connection before answering CONNECT")
            answer += data
            if len(answer) > 65536:
                raise ProxyError(f"proxy {proxy.address} sent an oversized answer to CONNECT")
        head_end = answer.index(b"\r\n\r\n") + 4
        status_line = answer.split(b"\r\n", 1)[0].split(None, 2)
        status = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
        if status == 407:
            raise ProxyError(f"proxy authentication failed (HTTP 407 from proxy {proxy.address})")
        if not 200 <= status < 300:
            raise ProxyError(f"proxy {proxy.address} refused the tunnel (HTTP {status or 'garbage'})")
        if len(answer) > head_end:   # the upstream speaks only after our TLS hello: nothing may follow yet
            raise ProxyError(f"proxy {proxy.address} sent data after its CONNECT answer")
    except BaseException:
        sock.close()
        raise
    return sock

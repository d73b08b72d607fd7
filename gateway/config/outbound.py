"""How the gateway reaches one provider: the proxy it goes through and the CAs its TLS trusts.

Decided once, at config load, from the provider file and the environment (gateway.http.outbound_proxy explains the
proxy variables). TLS trust: the provider's `ca_file` (only that file), else `SSL_CERT_FILE` /
`SSL_CERT_DIR` as OpenSSL reads them (each replaces the system's CA file / directory), else the system's.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.http.outbound_proxy import ProxyConfigError, parse_proxy, proxy_from_env


@dataclass(frozen=True, slots=True)
class Outbound:
    proxy: str = ""        # http:// proxy URL, "" for a direct connection
    ca_file: str = ""
    ca_dir: str = ""


def outbound(doc: Mapping[str, Any], base_url: str, env: Mapping[str, str], root: Path,
             err: Any) -> Outbound:
    """The provider's Outbound; each problem goes to `err(path, message)`."""
    return Outbound(_proxy(doc, base_url, env, err), *_trust(doc, base_url, env, root, err))


def _proxy(doc: Mapping[str, Any], base_url: str, env: Mapping[str, str], err: Any) -> str:
    if "proxy" in doc:
        url = str(doc["proxy"]).strip()
        url = "" if url.lower() == "none" else url
        source = ""
    else:
        url, source = proxy_from_env(base_url, env)
    if not url:
        return ""
    try:
        parse_proxy(url)
    except ProxyConfigError as exc:
        if source:
            err("proxy", f"{source}={_redacted(url)}: {exc}; set `proxy: none` here or name the host in NO_PROXY "
                         "to connect directly")
        else:
            err("proxy", str(exc))
        return ""
    return url


def _redacted(url: str) -> str:
    """The URL without its credentials, for messages."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "") if "@" in url else url


def _trust(doc: Mapping[str, Any], base_url: str, env: Mapping[str, str], root: Path, err: Any) -> tuple[str, str]:
    https = base_url.startswith("https://")
    if "ca_file" in doc:
        path = Path(doc["ca_file"]).expanduser()
        path = path if path.is_absolute() else root / path
        if not https:
            err("ca_file", "only an https:// base_url uses TLS")
        elif not path.is_file():
            err("ca_file", f"no such file: {path}")
        return str(path), ""
    cert_file, cert_dir = env.get("SSL_CERT_FILE", ""), env.get("SSL_CERT_DIR", "")
    if not https or not (cert_file or cert_dir):
        return "", ""
    if cert_file and not os.path.isfile(cert_file):
        err("ca_file", f"SSL_CERT_FILE={cert_file}: no such file")
    if cert_dir and not os.path.isdir(cert_dir):
        err("ca_file", f"SSL_CERT_DIR={cert_dir}: no such directory")
    defaults = ssl.get_default_verify_paths()
    if not cert_file and defaults.openssl_cafile and os.path.isfile(defaults.openssl_cafile):
        cert_file = defaults.openssl_cafile
    if not cert_dir and defaults.openssl_capath and os.path.isdir(defaults.openssl_capath):
        cert_dir = defaults.openssl_capath
    return cert_file, cert_dir

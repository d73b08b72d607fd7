"""A small HTTP proxy on loopback for the outbound-proxy tests: CONNECT tunnels and absolute-form
requests, Basic auth, and a log of what it was asked. It only ever connects to 127.0.0.1.

    with LoopbackProxy(("user", "pass")) as proxy:     # proxy.url_with("user", "pass"), proxy.seen
        ...
"""

from __future__ import annotations

import base64
import socket
import threading
from dataclasses import dataclass
from typing import Self
from urllib.parse import urlsplit


@dataclass
class Seen:
    method: str
    target: str
    authorization: str     # the Proxy-Authorization it got, or ""


def _read_head(conn: socket.socket, buf: bytes) -> tuple[bytes, bytes] | None:
    while b"\r\n\r\n" not in buf:
        data = conn.recv(65536)
        if not data:
            return None
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head, rest


def _headers(lines: list[str]) -> dict[str, str]:
    return {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines if ":" in ln)}


class LoopbackProxy:
    def __init__(self, credentials: tuple[str, str] | None = None, *, silent: bool = False) -> None:
        """`silent`: accept connections and never answer (for connect deadlines)."""
        self.expected = ("Basic " + base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
                         if credentials else None)
        self.silent = silent
        self.seen: list[Seen] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url_with(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"http://{auth}127.0.0.1:{self.port}"

    def _track(self, s: socket.socket) -> socket.socket:
        with self._lock:
            self._conns.append(s)
        return s

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(self._track(conn),), daemon=True).start()

    def _authorized(self, conn: socket.socket, headers: dict[str, str]) -> bool:
        if self.expected is None or headers.get("proxy-authorization") == self.expected:
            return True
        conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\n"
                     b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        return False

    def _serve(self, conn: socket.socket) -> None:
        try:
            got = _read_head(conn, b"")
            if got is None or self.silent:
                if self.silent:
                    self._stop.wait(30)
                return
            head, rest = got
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = _headers(lines[1:])
            self.seen.append(Seen(method, target, headers.get("proxy-authorization", "")))
            if not self._authorized(conn, headers):
                return
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                assert host in ("127.0.0.1", "localhost"), "the test proxy reaches loopback only"
                origin = self._track(socket.create_connection(("127.0.0.1", int(port))))
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    origin.sendall(rest)
                threading.Thread(target=self._pipe, args=(origin, conn), daemon=True).start()
                self._pipe(conn, origin)
                return
            parts = urlsplit(target)
            assert parts.hostname == "127.0.0.1", "the test proxy reaches loopback only"
            origin = self._track(socket.create_connection(("127.0.0.1", parts.port or 80)))
            threading.Thread(target=self._pipe, args=(origin, conn), daemon=True).start()
            self._forward(conn, origin, lines, rest)
        except OSError:
            return
        finally:
            conn.close()

    def _forward(self, conn: socket.socket, origin: socket.socket, lines: list[str], rest: bytes) -> None:
        """Absolute-form requests, one after another: rewritten to origin form, without the proxy's header."""
        while True:
            method, target, version = lines[0].split(" ", 2)
            parts = urlsplit(target)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            kept = [ln for ln in lines[1:] if not ln.lower().startswith("proxy-authorization:")]
            size = int(_headers(lines[1:]).get("content-length", "0"))
            while len(rest) < size:
                data = conn.recv(65536)
                if not data:
                    return
                rest += data
            origin.sendall("\r\n".join([f"{method} {path} {version}", *kept]).encode("latin-1") + b"\r\n\r\n"
                           + rest[:size])
            got = _read_head(conn, rest[size:])
            if got is None:
                return
            head, rest = got
            lines = head.decode("latin-1").split("\r\n")
            headers = _headers(lines[1:])
            self.seen.append(Seen(lines[0].split(" ")[0], lines[0].split(" ")[1], headers.get("proxy-authorization", "")))
            if not self._authorized(conn, headers):
                return

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        with self._lock:
            for s in self._conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

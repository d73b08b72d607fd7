"""A fake YooKassa-style payment provider on loopback, for the cabinet's top-up tests.

    fake = FakePayments(shop_id="shop", secret_key="sk", webhook_secret="whsec")
    env = fake.env()                          # PAYMENT_API_URL, PAYMENT_SHOP_ID, ... for the gateway
    fake.webhook_url = gateway.base_url + "/payments/webhook/yookassa"
    fake.deliveries = 2                       # the next payments' webhook is sent twice...
    fake.concurrent = True                    # ...at the same moment

It speaks the create-payment API (POST /v3/payments, HTTP Basic shop id / secret key, Idempotence-Key; the
answer's confirmation.confirmation_url is its own hosted page), serves that page with a "Pay" and a "Cancel"
button, and on Pay marks the payment succeeded, POSTs the `payment.succeeded` notification to the webhook URL
signed with `X-Payment-Signature: sha256=HMAC-SHA256(webhook_secret, raw body)` (as many times as asked), then
redirects the customer to the payment's return_url. Everything it did is recorded for the tests.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web


@dataclass
class Delivery:
    status: int
    body: str


@dataclass
class FakePayment:
    id: str
    amount: dict[str, str]
    description: str
    metadata: dict[str, str]
    return_url: str
    idempotence_key: str
    status: str = "pending"
    deliveries: list[Delivery] = field(default_factory=list)


class FakePayments:
    def __init__(self, shop_id: str = "shop-1", secret_key: str = "sk_test_fake",
                 webhook_secret: str = "whsec_test_fake") -> None:
        self.shop_id, self.secret_key, self.webhook_secret = shop_id, secret_key, webhook_secret
        self.webhook_url = ""
        self.deliveries = 1
        self.concurrent = False
        self.payments: dict[str, FakePayment] = {}
        self.create_requests: list[dict[str, Any]] = []
        self.status_requests = 0
        self._by_key: dict[str, str] = {}
        self._loop = asyncio.new_event_loop()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.api_url = self.origin + "/v3"
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name=f"fake-pay-{self.port}", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("fake payment provider did not start")

    def env(self) -> dict[str, str]:
        return {"PAYMENT_API_URL": self.api_url, "PAYMENT_SHOP_ID": self.shop_id,
                "PAYMENT_SECRET_KEY": self.secret_key, "PAYMENT_WEBHOOK_SECRET": self.webhook_secret}

    # -- for tests ---------------------------------------------------------------------------------------

    def notification(self, payment: FakePayment, event: str = "payment.succeeded", **changes: Any) -> bytes:
        obj: dict[str, Any] = {"id": payment.id, "status": "succeeded" if event == "payment.succeeded" else "canceled",
                               "paid": event == "payment.succeeded", "amount": dict(payment.amount),
                               "description": payment.description, "metadata": dict(payment.metadata),
                               "created_at": "2026-01-01T00:00:00.000Z"}
        obj.update(changes)
        return json.dumps({"type": "notification", "event": event, "object": obj}).encode()

    def sign(self, raw: bytes, secret: str | None = None) -> str:
        key = (self.webhook_secret if secret is None else secret).encode()
        return "sha256=" + hmac.new(key, raw, hashlib.sha256).hexdigest()

    def deliver(self, raw: bytes, signature: str | None = None, times: int = 1,
                concurrent: bool = False) -> list[Delivery]:
        """Send a notification to the webhook URL from the test thread (through the fake's own loop)."""
        fut = asyncio.run_coroutine_threadsafe(
            self._deliver(raw, self.sign(raw) if signature is None else signature, times, concurrent), self._loop)
        return fut.result(timeout=30)

    def last(self) -> FakePayment:
        return list(self.payments.values())[-1]

    def close(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._sock.close()

    # -- the server ----------------------------------------------------------------------------------------

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/v3/payments", self._create)
        app.router.add_get("/v3/payments/{id}", self._status)
        app.router.add_get("/checkout/{id}", self._page)
        app.router.add_post("/checkout/{id}/{action}", self._act)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.2)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.SockSite(self._runner, self._sock).start())
        started.set()
        self._loop.run_forever()

    async def _create(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{self.shop_id}:{self.secret_key}".encode()).decode()
        if not hmac.compare_digest(request.headers.get("Authorization", ""), expected):
            return web.json_response({"type": "error", "code": "invalid_credentials"}, status=401)
        key = request.headers.get("Idempotence-Key", "")
        if not key:
            return web.json_response({"type": "error", "code": "invalid_request"}, status=400)
        body = await request.json()
        self.create_requests.append({"headers": dict(request.headers), "body": body})
        if key in self._by_key:
            return web.json_response(self._doc(self.payments[self._by_key[key]]))
        pid = str(uuid.uuid4())
        p = FakePayment(pid, body["amount"], body.get("description", ""), body.get("metadata", {}),
                        body["confirmation"]["return_url"], key)
        self.payments[pid], self._by_key[key] = p, pid
        return web.json_response(self._doc(p))

    async def _status(self, request: web.Request) -> web.Response:
        """GET /v3/payments/{id}: the payment as it is now (the gateway's status poll)."""
        expected = "Basic " + base64.b64encode(f"{self.shop_id}:{self.secret_key}".encode()).decode()
        if not hmac.compare_digest(request.headers.get("Authorization", ""), expected):
            return web.json_response({"type": "error", "code": "invalid_credentials"}, status=401)
        self.status_requests += 1
        p = self.payments.get(request.match_info["id"])
        if p is None:
            return web.json_response({"type": "error", "code": "not_found"}, status=404)
        return web.json_response(self._doc(p))

    def _doc(self, p: FakePayment) -> dict[str, Any]:
        return {"id": p.id, "status": p.status, "paid": p.status == "succeeded", "amount": p.amount,
                "confirmation": {"type": "redirect", "confirmation_url": f"{self.origin}/checkout/{p.id}"},
                "created_at": "2026-01-01T00:00:00.000Z", "description": p.description, "metadata": p.metadata,
                "recipient": {"account_id": self.shop_id, "gateway_id": "1"}, "refundable": False, "test": True}

    async def _page(self, request: web.Request) -> web.Response:
        p = self.payments.get(request.match_info["id"])
        if p is None:
            return web.Response(status=404, text="no such payment")
        amount = f"{html.escape(p.amount['value'])} {html.escape(p.amount['currency'])}"
        page = f"""<!doctype html><html><head><meta charset="utf-8"><title>FakeKassa · payment</title>
<style>body{{font:16px system-ui;background:#f2f4f7;margin:0}}.box{{max-width:380px;margin:60px auto;background:#fff;
border-radius:12px;padding:28px;box-shadow:0 1px 3px #0002}}.amt{{font-size:28px;font-weight:600;margin:8px 0 20px}}
button{{font:inherit;padding:10px 18px;border-radius:8px;border:1px solid #ccc;background:#fff;cursor:pointer}}
button.pay{{background:#1a7f4b;color:#fff;border-color:#1a7f4b;width:100%;margin-bottom:8px}}</style></head>
<body><div class="box"><div>FakeKassa test checkout</div><div class="amt" id="amount">{amount}</div>
<div>{html.escape(p.description)}</div><p>Status: <b id="status">{p.status}</b></p>
<form method="post" action="/checkout/{p.id}/pay"><button class="pay" id="pay">Pay {amount}</button></form>
<form method="post" action="/checkout/{p.id}/cancel"><button id="cancel">Cancel</button></form></div></body></html>"""
        return web.Response(text=page, content_type="text/html")

    async def _act(self, request: web.Request) -> web.Response:
        p = self.payments.get(request.match_info["id"])
        action = request.match_info["action"]
        if p is None or action not in ("pay", "cancel"):
            return web.Response(status=404, text="no such payment")
        if p.status == "pending":
            p.status = "succeeded" if action == "pay" else "canceled"
            event = "payment.succeeded" if action == "pay" else "payment.canceled"
            raw = self.notification(p, event)
            p.deliveries += await self._deliver(raw, self.sign(raw), self.deliveries, self.concurrent)
        raise web.HTTPSeeOther(p.return_url)

    async def _deliver(self, raw: bytes, signature: str, times: int, concurrent: bool) -> list[Delivery]:
        async with aiohttp.ClientSession() as session:
            async def one() -> Delivery:
                async with session.post(self.webhook_url, data=raw, headers={
                        "Content-Type": "application/json", "X-Payment-Signature": signature}) as resp:
                    return Delivery(resp.status, await resp.text())

            if concurrent:
                return list(await asyncio.gather(*(one() for _ in range(times))))
            return [await one() for _ in range(times)]

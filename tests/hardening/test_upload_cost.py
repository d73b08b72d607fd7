"""What a large upload costs the worker that reads it (issue 20): a 10 MB transcription upload is held once —
the worker's resident set grows by less than twice the file — and is parsed as it arrives, so the event loop
keeps answering other requests meanwhile. The gateway runs as `gateway serve`; the upstream is a raw socket
that drains the upload and answers a transcript."""

from __future__ import annotations

import http.client
import io
import json
import math
import struct
import threading
import time
import wave
from collections.abc import Iterator

import pytest

from tests.support.served import Served
from tests.support.gateway_server import GatewayServer, copy_root, make_customer
from tests.support.raw_upstream import RawRequest, RawUpstream, Step, answer

MiB = 1024 * 1024
BOUNDARY = "upload-cost-boundary"


def canned(req: RawRequest) -> list[Step]:
    doc = {"text": f"got {len(req.body)} bytes", "usage": {"type": "duration", "seconds": 300}}
    return [answer(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, gateway_env: dict[str, str]) -> Iterator[Served]:
    with RawUpstream(canned) as up:
        root = copy_root(tmp_path_factory.mktemp("upload"))
        s = Served(root, gateway_env | {"OPENAI_BASE_URL": up.base_url + "/v1"})
        yield s
        s.close()


def wav_file(size: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        tone = b"".join(struct.pack("<h", int(6000 * math.sin(i / 5))) for i in range(16000))
        w.writeframes((tone * (size // len(tone) + 1))[: size - 44])
    return out.getvalue()


def form(audio: bytes) -> bytes:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"talk.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()
    return head + audio + f"\r\n--{BOUNDARY}--\r\n".encode()


def upload(port: int, secret: str, body: bytes) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/v1/audio/transcriptions", body=body, headers={
            "Authorization": f"Bearer {secret}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"{}")
    finally:
        conn.close()


def test_a_10mb_upload_is_held_once(served: Served, gateway: GatewayServer) -> None:
    c = make_customer(gateway, usd="50")
    assert upload(served.port, c.secret, form(wav_file(64 * 1024)))[0] == 200   # warm: imports, pools
    body = form(wav_file(10 * MiB))
    worst: list[float] = []
    stop = threading.Event()

    def probe() -> None:  # GET /v1 every 5 ms: its slowest answer is how long the event loop was held
        conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
        while not stop.is_set():
            t = time.perf_counter()
            conn.request("GET", "/v1")
            conn.getresponse().read()
            worst.append(time.perf_counter() - t)
            time.sleep(0.005)
        conn.close()

    try:
        with open(f"/proc/{served.proc.pid}/clear_refs", "w") as f:
            f.write("5")   # reset the peak (VmHWM) to the current resident set
    except OSError:
        pytest.skip("cannot reset the gateway's peak RSS here (/proc/PID/clear_refs)")
    before = served.rss("VmRSS")
    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    time.sleep(0.2)
    baseline = max(worst, default=0.0)
    worst.clear()
    status, doc = upload(served.port, c.secret, body)
    stop.set()
    prober.join(10)
    peak = served.rss("VmHWM")
    assert status == 200 and doc["text"].startswith("got ")
    grown = peak - before
    print(f"\nRSS {before / MiB:.1f} MiB → peak {peak / MiB:.1f} MiB (+{grown / MiB:.1f} MiB) for a "
          f"{len(body) / MiB:.1f} MiB upload; event loop held at most {max(worst) * 1000:.1f} ms")
    assert grown <= 2 * len(body), f"the worker grew by {grown / MiB:.1f} MiB for a {len(body) / MiB:.1f} MiB upload"
    assert max(worst) < 0.100 + baseline, f"the event loop was held {max(worst) * 1000:.0f} ms"

"""The transport: HTTP in from clients, HTTP out to providers, and the processes that serve them.

In (clients → gateway)
    server_protocol  our HTTP/1.1 server protocol on httptools, run by uvicorn in place of its own (one
                     write per answer, no timer or event per request; every limit of `server.limits`)
    pacing           a burst of requests is started two per loop turn while the worker keeps up
    asgi             raw ASGI primitives for the /v1 hot path (bounded body, JSON answers)
    client_address   the client's address and scheme behind trusted reverse proxies
    serve            `gateway serve`: uvicorn with uvloop and our protocol; the embedded Redis; the fd limit
    workers          `--workers N`: a socket per worker (SO_REUSEPORT) under a small supervisor

Out (gateway → providers)
    client           our HTTP/1.1 client for the upstream hot path: keep-alive pools, TLS, httptools parsing,
                     1xx, close-delimited and gzip/deflate answers, proxies (why not aiohttp/httpx/pyreqwest:
                     its docstring and bench/RESULTS.md)
    upstreams        one pool per provider, built from its config (auth header, proxy, CA)
    outbound_proxy   HTTP(S)_PROXY / NO_PROXY and a provider's own `proxy:`; CONNECT tunnels
    content_coding   gzip / deflate decoding of upstream answers
    sse              Server-Sent Events: parsing upstream streams, framing ours

Which client serves which path, and why:
    HTTP to providers, per paid call      http.client (purpose-built: ~13 µs of CPU per call against 31 µs
                                          for pyreqwest and 83 µs for aiohttp, measured in one run)
    HTTP to the payment provider          httpx (a few calls per top-up; its features matter more than CPU)
    Redis, per paid call (admit, settle)  gateway.store.resp: a pipelined RESP client, batched per loop turn,
                                          with deadlines and a circuit breaker (redis-py costs ~5x the CPU)
    Redis, everything else                redis-py (token lookup, accounts, the cabinet, the CLI, sessions)
"""

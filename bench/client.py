"""OpenAI-compatible client speed: curate's OpenAIBackend against a bare async httpx client.

A simulated OpenAI-compatible server runs on loopback in its own process (two ports, so round-robin has two
URLs): a bare asyncio protocol that parses HTTP/1.1 keep-alive requests and answers every
``POST /v1/completions`` / ``/v1/chat/completions`` at once with a fixed completion. It does no work, so the
figures measure the clients.

1. bare: ``httpx.AsyncClient`` with 64 tasks in flight, alternating the two URLs, reading the JSON of each
   answer. This is the reference: a client that does nothing but send and parse.
2. curate: ``OpenAIBackend(model, [url1, url2], max_concurrency=64)`` (retries ON: ``max_retries=4``,
   round-robin over both URLs), ``generate`` over the same number of prompts, in calls of ``--batch``
   prompts (the way stages call it), completions built with stops, finish reasons and the repetition guard.

Each side runs ``--rounds`` times, alternating (the machine is shared: the best round of each is kept, and the
ratio is of the best rounds). Prints::

    BENCH server_rps_bare_at_1=, _at_8=   the bare client at 1 and 8 in flight, measured first (is the server fast?)
    BENCH bare_rps=          requests/s of the bare async client at 64 concurrent requests
    BENCH client_rps=        requests/s of OpenAIBackend.generate at 64 concurrent requests
    BENCH client_vs_bare_pct=   client_rps / bare_rps × 100 (goal ≥ 90)
    BENCH client_overhead_ms_per_candidate=   1000/client_rps − 1000/bare_rps: the wall time each candidate
                             (one request) costs in curate's client beyond the bare one, at 64 in flight
    BENCH raw_asyncio_rps=, raw_asyncio_cpu_ms_per_request=   a hand-written asyncio-streams HTTP client (no
                             pooling, no errors, no retries): the floor of a Python client, for scale
    BENCH bare_cpu_ms_per_request=, client_cpu_ms_per_request=, client_cpu_overhead_ms_per_candidate=
                             the client process's CPU time per request (threads included): on a loaded machine
                             wall-clock rates also measure how the scheduler shares the cores between a
                             one-thread event loop and a pool of threads; CPU time per request does not

    python bench/client.py [--requests 4000] [--concurrency 64] [--batch 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from curate.lm.base import GenParams  # noqa: E402
from curate.lm.openai_backend import OpenAIBackend  # noqa: E402

MODEL = "sim/instant"
_BODY = json.dumps({
    "id": "cmpl-sim", "object": "text_completion", "model": MODEL,
    "choices": [{"index": 0, "text": "A short answer from the simulated server.", "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "A short answer from the simulated server."},
                 "logprobs": None}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20},
}).encode()
_RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
             + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY)


class _Instant(asyncio.Protocol):
    """HTTP/1.1 keep-alive: every complete request (headers + Content-Length body) gets the fixed answer."""

    def connection_made(self, transport):
        self.transport, self.buf = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out = []
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                break
            head = self.buf[:head_end].lower()
            i = head.find(b"content-length:")
            length = int(head[i + 15:head.find(b"\r\n", i) if head.find(b"\r\n", i) > 0 else None]) if i >= 0 else 0
            end = head_end + 4 + length
            if len(self.buf) < end:
                break
            self.buf = self.buf[end:]
            out.append(_RESPONSE)
        if out:
            self.transport.write(b"".join(out))


def serve(ports: list[int], ready) -> None:
    """Run the instant server on 127.0.0.1 at ``ports`` (0 = any); sends the bound ports to ``ready``."""
    async def main():
        loop = asyncio.get_running_loop()
        servers = [await loop.create_server(_Instant, "127.0.0.1", p, backlog=1024) for p in ports]
        ready.send([s.sockets[0].getsockname()[1] for s in servers])
        await asyncio.Event().wait()
    asyncio.run(main())


def start_server() -> tuple[multiprocessing.Process, list[str]]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=([0, 0], child), daemon=True)
    proc.start()
    ports = parent.recv()
    return proc, [f"http://127.0.0.1:{p}" for p in ports]


def bare(urls: list[str], n: int, concurrency: int) -> tuple[float, float]:
    """(requests/s, client CPU ms per request) of a bare httpx.AsyncClient with ``concurrency`` requests in
    flight over ``urls``."""
    async def main() -> float:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            counter = iter(range(n))

            async def worker():
                for i in counter:
                    r = await client.post(urls[i % len(urls)] + "/v1/completions",
                                          json={"model": MODEL, "prompt": f"prompt {i}", "max_tokens": 64})
                    r.raise_for_status()
                    r.json()["choices"][0]["text"]

            await asyncio.gather(*(worker() for _ in range(min(concurrency, 8))))  # warm the connections
            counter = iter(range(n))
            t, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return n / (time.perf_counter() - t), (time.process_time() - cpu) * 1000 / n
    return asyncio.run(main())


def raw(urls: list[str], n: int, concurrency: int) -> tuple[float, float]:
    """The floor of a Python client: asyncio streams, hand-written HTTP/1.1 keep-alive, one connection per
    task, the JSON parsed. Not a usable client (no pooling, errors or retries): it shows how much of the
    bare httpx client's time is httpx's."""
    async def main() -> tuple[float, float]:
        counter = iter(range(n))

        async def worker(w: int):
            host, port = urls[w % len(urls)].rsplit("/", 1)[1].split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            for i in counter:
                body = json.dumps({"model": MODEL, "prompt": f"prompt {i}", "max_tokens": 64}).encode()
                writer.write(b"POST /v1/completions HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\n\r\n%s" % (host.encode(), len(body), body))
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                json.loads(await reader.readexactly(length))["choices"][0]["text"]
            writer.close()

        t, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        return n / (time.perf_counter() - t), (time.process_time() - cpu) * 1000 / n
    return asyncio.run(main())


def curate_client(urls: list[str], n: int, concurrency: int, batch: int) -> tuple[float, float]:
    """(requests/s, client CPU ms per request) of OpenAIBackend.generate (retries and round-robin on) over
    ``n`` prompts."""
    params = GenParams(max_new_tokens=64, stop=("\n\n",))
    with OpenAIBackend(MODEL, urls, max_concurrency=concurrency, max_retries=4) as lm:
        lm.generate([f"warm {i}" for i in range(concurrency)], params)
        prompts = [f"prompt {i}" for i in range(n)]
        t, cpu = time.perf_counter(), time.process_time()
        done = 0
        for start in range(0, n, batch):
            out = lm.generate(prompts[start:start + batch], params)
            done += len(out)
        rate, cpu_ms = done / (time.perf_counter() - t), (time.process_time() - cpu) * 1000 / done
        urls_used = {c.extra["url"].rsplit("/v1", 1)[0] for c in out}
        assert urls_used == set(urls), f"round-robin did not use every URL: {urls_used}"
        return rate, cpu_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=4000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--batch", type=int, default=512, help="prompts per generate call (default 512)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    proc, urls = start_server()
    try:
        for conc in (1, 8):  # is the server fast? (the bare client at low concurrency)
            print(f"BENCH server_rps_bare_at_{conc}={bare(urls, args.requests // 4, conc)[0]:.0f}", flush=True)
        bare_best = client_best = 0.0
        bare_cpu = client_cpu = float("inf")
        for r in range(args.rounds):
            b, b_cpu = bare(urls, args.requests, args.concurrency)
            c, c_cpu = curate_client(urls, args.requests, args.concurrency, args.batch)
            print(f"round {r}: bare {b:.0f}/s {b_cpu:.2f} cpu-ms/req, curate {c:.0f}/s {c_cpu:.2f} cpu-ms/req",
                  file=sys.stderr, flush=True)
            bare_best, client_best = max(bare_best, b), max(client_best, c)
            bare_cpu, client_cpu = min(bare_cpu, b_cpu), min(client_cpu, c_cpu)
        r_rps, r_cpu = raw(urls, args.requests, args.concurrency)
        print(f"BENCH raw_asyncio_rps={r_rps:.0f}")
        print(f"BENCH raw_asyncio_cpu_ms_per_request={r_cpu:.2f}")
        print(f"BENCH load_avg_1m={os.getloadavg()[0]:.1f}")
        print(f"BENCH concurrency={args.concurrency}")
        print(f"BENCH bare_rps={bare_best:.0f}")
        print(f"BENCH client_rps={client_best:.0f}")
        print(f"BENCH client_vs_bare_pct={100 * client_best / bare_best:.1f}")
        overhead = 1000 / client_best - 1000 / bare_best
        print(f"BENCH client_overhead_ms_per_candidate={overhead:.2f}")
        print(f"BENCH bare_cpu_ms_per_request={bare_cpu:.2f}")
        print(f"BENCH client_cpu_ms_per_request={client_cpu:.2f}")
        print(f"BENCH client_cpu_overhead_ms_per_candidate={client_cpu - bare_cpu:.2f}")
    finally:
        proc.terminate()
        proc.join(5)


if __name__ == "__main__":
    main()

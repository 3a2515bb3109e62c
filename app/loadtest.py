"""A short load test of GET /target: a fixed number of requests from a bounded number of
concurrent clients; reports latency percentiles, errors and the server's peak inference queue.

    python -m app.loadtest --url http://127.0.0.1:7860 --requests 60 --concurrency 6
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np

PROMPTS = ["stand up straight", "run fast", "walk forward", "lie down", "kneel", "balance on one foot",
           "kick high", "do a backflip", "sit on your knees", "raise both legs"]


def run_load(url: str, requests: int = 60, concurrency: int = 6, steps: int = 16, distinct: bool = True,
             timeout: float = 120.0, tag: str = "") -> dict[str, Any]:
    """`distinct`: every request a new prompt (measures real decoding, not the target cache);
    `tag` makes the prompts of one run differ from another's. A 429 (queue full) is a refusal
    the server chose, counted apart from errors (failed requests, 5xx, bad responses)."""
    def one(i: int) -> tuple[int, float]:
        prompt = PROMPTS[i % len(PROMPTS)] + (f" variant {tag}{i}" if distinct else "")
        t0 = time.perf_counter()
        try:
            r = client.get(f"{url}/target", params={"prompt": prompt, "steps": steps})
            ok = r.status_code == 200 and r.headers.get("content-type") == "video/mp4" and len(r.content) > 0
            return (r.status_code if ok or r.status_code != 200 else 599), time.perf_counter() - t0
        except httpx.HTTPError:
            return 0, time.perf_counter() - t0

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(timeout=timeout, limits=limits) as client:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, range(requests)))
        wall = time.perf_counter() - t0
        health = client.get(f"{url}/health").json()
    lat = np.array([r[1] for r in results]) * 1000
    codes: dict[str, int] = {}
    for code, _ in results:
        codes[str(code)] = codes.get(str(code), 0) + 1
    return {"requests": requests, "concurrency": concurrency, "steps": steps, "distinct_prompts": distinct,
            "errors": sum(1 for c, _ in results if c not in (200, 429)), "refused_429": codes.get("429", 0),
            "status_codes": codes,
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p95_ms": round(float(np.percentile(lat, 95)), 1),
            "max_ms": round(float(lat.max()), 1), "wall_s": round(wall, 2),
            "requests_per_s": round(requests / wall, 2), "server_inference": health["inference"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:7860")
    p.add_argument("--requests", type=int, default=60)
    p.add_argument("--concurrency", type=int, default=6)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--cached", action="store_true", help="repeat prompts (measures the target cache)")
    args = p.parse_args()
    print(json.dumps(run_load(args.url, args.requests, args.concurrency, args.steps, not args.cached), indent=1))


if __name__ == "__main__":
    main()

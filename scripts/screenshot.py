"""Start `genrl serve` on a bundle as a user would, time how long until the page is usable, then
drive the UI in headless Chromium (prompt -> target -> learn -> results) and save a screenshot.

    .venv/bin/python scripts/screenshot.py                       # shipped walker bundle -> docs/ui.png
    .venv/bin/python scripts/screenshot.py --bundle /tmp/bundle --out out/ui.png --updates 30

"Usable" = the UI page loads in the browser, the bundle reports ready and a target video for the
typed prompt appears. Runs in a temporary run folder, so nothing is added to runs/app/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
def text(selector: str) -> str:
    """JS expression: the element's text, '' until Gradio has rendered it."""
    return f"(document.querySelector('{selector}') || {{innerText: ''}}).innerText"


ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", default="checkpoints/walker")
    p.add_argument("--out", default="docs/ui.png")
    p.add_argument("--prompt", default="stand up straight")
    p.add_argument("--updates", type=int, default=40, help="learning updates for the demo job (0: no learning)")
    p.add_argument("--eval-episodes", type=int, default=1)
    p.add_argument("--port", type=int, default=7877)
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for the job")
    args = p.parse_args()

    from playwright.sync_api import sync_playwright

    runs = tempfile.mkdtemp(prefix="genrl-screenshot-")
    env = {**os.environ, "GENRL_RUNS": runs, "GENRL_UPDATES": str(max(args.updates, 1)),
           "GENRL_EVAL_EPISODES": str(args.eval_episodes)}
    url = f"http://127.0.0.1:{args.port}"
    t0 = time.perf_counter()
    server = subprocess.Popen([str(ROOT / ".venv/bin/genrl"), "serve", "--bundle", args.bundle,
                               "--port", str(args.port)], cwd=ROOT, env=env)
    timings: dict[str, float] = {}
    try:
        while True:
            try:
                if httpx.get(f"{url}/ui/", timeout=2).status_code == 200:
                    timings["page_served_s"] = time.perf_counter() - t0
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                sys.exit(f"genrl serve exited with {server.returncode}")
            time.sleep(0.1)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1250})
            page.goto(f"{url}/ui/")
            page.wait_for_function(f"{text('#status')}.includes('ready')", timeout=120_000)
            timings["bundle_ready_s"] = time.perf_counter() - t0
            page.fill("#prompt textarea", args.prompt)
            page.click("#target-btn")
            page.wait_for_selector("#target-video video[src]", timeout=120_000)
            timings["first_target_shown_s"] = time.perf_counter() - t0
            if args.updates > 0:
                page.click("#learn-btn")
                page.wait_for_function(rf"/update \d+\//.test({text('#progress')})",
                                       timeout=args.timeout * 1000)
                selector = "#real-video video[src]" if args.eval_episodes else "#imagined-video video[src]"
                page.wait_for_selector(selector, timeout=args.timeout * 1000)
                timings["job_done_s"] = time.perf_counter() - t0
            page.wait_for_timeout(1500)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
        health = httpx.get(f"{url}/health").json()
    finally:
        server.terminate()
        server.wait(60)
    print(json.dumps({"screenshot": args.out, "bundle": args.bundle,
                      **{k: round(v, 1) for k, v in timings.items()}, "bodies": health["bodies"]}, indent=1))


if __name__ == "__main__":
    main()

"""A short load test on loopback: bounded concurrent GET /target requests against a real uvicorn
server give no errors, and the server's inference queue stays bounded (overflow gets a 429)."""

import json
from pathlib import Path

from app.background import running
from app.bodies import Gate
from app.loadtest import run_load
from app.main import create_app

REPORT = Path("out/app_load.json")


def test_target_under_bounded_concurrency(tiny_bundle, tmp_path):
    app = create_app(tiny_bundle, db=tmp_path / "jobs.sqlite", runs=tmp_path / "runs", ui=False,
                     inference_slots=1, inference_queue=16)
    with running(app) as url:
        steady = run_load(url, requests=48, concurrency=6, steps=16, distinct=True)
        # a burst wider than the queue: the overflow is refused at once with 429, nothing else fails
        app.state.services.bodies.gate = Gate(slots=1, max_waiting=2)
        burst = run_load(url, requests=24, concurrency=8, steps=16, distinct=True, tag="burst")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps({"steady": steady, "burst": burst}, indent=1))
    print(f"\n[load] steady: {json.dumps(steady)}\n[load] burst: {json.dumps(burst)}")

    assert steady["errors"] == 0 and steady["status_codes"] == {"200": 48}
    assert steady["server_inference"]["peak_waiting"] <= 6 and steady["server_inference"]["rejected"] == 0
    # latency is reported (out/app_load.json, README), not asserted: timings belong to benchmarks
    assert burst["errors"] == 0 and set(burst["status_codes"]) <= {"200", "429"}
    assert burst["refused_429"] > 0 and burst["status_codes"].get("200", 0) >= 3
    assert burst["server_inference"]["peak_waiting"] <= 2

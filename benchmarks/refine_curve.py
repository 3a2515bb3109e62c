"""Refinement curve (issue 28): real score against minutes of per-prompt learning, warm-started
from the bundle's generalist (`init=generalist`) against learning from scratch, for each prompt.

    python benchmarks/refine_curve.py --bundle checkpoints/walker --out runs/refine_curve \\
        --prompt "walk forward@walker_walk" --prompt "run fast@walker_run"

For each prompt and start, one learning run goes on to the last mark. At each mark (minutes of
learning, counted as `genrl learn` counts them) it is stopped (which checkpoints it), its actor is
scored in the real simulator (3 episodes, seeds 1000-1002, mean actions), and it resumes. The warm
run's 0-minute point is the generalist's zero-shot score; the cold run's is not measured (an
untrained actor). Both runs use the same learning seed, which differs from the shipped policies'
(seed 0), so neither reuses a shipped policy. The table gives the minutes the warm run needed to
reach the cold run's final score. New policies go to `--out` (rerunning resumes them); the bundle is
not written to.
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
from pathlib import Path

from genrl_core.agent import GenRL
from genrl_core.bundle import load_torch, save_torch
from genrl_core.generalist import InstantPolicy
from genrl_core.policies import POLICY_FILE, STATE_FILE, TARGET_FILE, LearnedPolicy, load_actor, read_meta
from genrl_core.train.behaviour import LearningCancelled

EVAL_SEED = 1000  # the score ladder's seeds, so the numbers compare


def parse_marks(text: str) -> list[float]:
    marks = sorted({float(m) for m in text.split(",") if m.strip()})
    if not marks or marks[0] <= 0:
        raise argparse.ArgumentTypeError(f"marks must be minutes > 0, comma-separated; got {text!r}")
    return marks


def score_checkpoint(agent: GenRL, run_dir: Path, mark: float, task: str, episodes: int) -> dict:
    """The real score of a stopped run's checkpoint. It is unfinished, so its actor is taken from
    the resumable state (the finished policy at the last mark) into a snapshot folder beside the run
    (`SLUG@MINUTES`), and loaded from there."""
    meta = read_meta(run_dir)
    snapshot = run_dir.with_name(f"{run_dir.name}@{mark:g}")
    snapshot.mkdir(exist_ok=True)
    actor_state = (load_torch(run_dir / POLICY_FILE) if meta.finished  # the last mark ends the run
                   else load_torch(run_dir / STATE_FILE)["learner"]["actor"])
    save_torch(snapshot / POLICY_FILE, actor_state)
    shutil.copy2(run_dir / TARGET_FILE, snapshot / TARGET_FILE)
    actor = load_actor(LearnedPolicy(meta, snapshot), agent.wm.cfg, agent.device)
    policy = InstantPolicy(meta, actor, target=None)  # anything that acts: evaluate only needs its actor
    result = agent.evaluate(policy, task, episodes=episodes, seed=EVAL_SEED)
    return {"updates": meta.updates_done, "score": result["normalised"], "return": result["mean_return"]}


def curve(agent: GenRL, prompt: str, task: str, init: str, marks: list[float], seed: int,
          episodes: int) -> list[dict]:
    """[{minutes, updates, score}] at each mark of one learning run (resumed between marks)."""
    plan = agent.plan(prompt, {"init": init, "seed": seed, "max_minutes": marks[-1]})
    run_dir = agent.policies.run_dir(plan.slug)
    points = []
    if init == "generalist":
        zero = agent.evaluate(agent.act(prompt), task, episodes=episodes, seed=EVAL_SEED)
        points.append({"minutes": 0.0, "updates": 0, "score": zero["normalised"], "return": zero["mean_return"]})
        print(f"  {init:10s} 0 min: {points[-1]['score']}", flush=True)
    for mark in marks:
        stop = threading.Event()

        def at_mark(m: dict, mark: float = mark, stop: threading.Event = stop) -> None:
            if m["elapsed"] >= 60 * mark:
                stop.set()

        try:
            agent.learn(plan, callback=at_mark, cancel=stop)
        except LearningCancelled:
            pass  # checkpointed at the mark
        point = {"minutes": mark, **score_checkpoint(agent, run_dir, mark, task, episodes)}
        points.append(point)
        print(f"  {init:10s} {mark:g} min ({point['updates']} updates): {point['score']}", flush=True)
    return points


def minutes_to_reach(points: list[dict], level: float) -> float | None:
    return next((p["minutes"] for p in points if p["score"] is not None and p["score"] >= level), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="checkpoints/walker", help="bundle with a trained generalist")
    ap.add_argument("--out", default="runs/refine_curve", help="where the runs' policies go (rerun: resume)")
    ap.add_argument("--prompt", action="append", default=None, metavar="TEXT@TASK",
                    help="a prompt and the task that scores it (repeatable; default: walk forward, run fast)")
    ap.add_argument("--cold-marks", type=parse_marks, default=parse_marks("2.5,5,10,20"),
                    help="minutes of learning at which the cold (scratch) run is scored")
    ap.add_argument("--warm-marks", type=parse_marks, default=parse_marks("2.5,5,10"),
                    help="minutes of learning at which the warm (generalist) run is scored")
    ap.add_argument("--seed", type=int, default=1, help="learning seed of both runs (not the shipped 0)")
    ap.add_argument("--episodes", type=int, default=3, help="real episodes per score")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    args = ap.parse_args()
    pairs = []
    for spec in args.prompt or ["walk forward@walker_walk", "run fast@walker_run"]:
        prompt, sep, task = spec.rpartition("@")
        if not sep or not prompt.strip() or not task:
            ap.error(f"--prompt {spec!r}: give TEXT@TASK, e.g. 'walk forward@walker_walk'")
        pairs.append((prompt, task))
    agent = GenRL.load(args.bundle, device=args.device, policies_dir=args.out)
    for _, task in pairs:
        if task not in agent.tasks():
            ap.error(f"unknown task {task!r} for {agent.body}; valid: {', '.join(agent.tasks())}")

    results = {}
    for prompt, task in pairs:
        print(f"{prompt!r} on {task}:", flush=True)
        results[prompt] = {"task": task,
                           "cold": curve(agent, prompt, task, "scratch", args.cold_marks, args.seed, args.episodes),
                           "warm": curve(agent, prompt, task, "generalist", args.warm_marks, args.seed,
                                         args.episodes)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "refine_curve.json").write_text(json.dumps(results, indent=1))

    print("\n| prompt | start | " + " | ".join(f"{m:g} min" for m in sorted({0.0, *args.cold_marks, *args.warm_marks}))
          + " | warm reaches cold's final score at |")
    all_marks = sorted({0.0, *args.cold_marks, *args.warm_marks})
    print("|---|---|" + "---|" * len(all_marks) + "---|")
    for prompt, r in results.items():
        final = r["cold"][-1]["score"]
        reach = minutes_to_reach(r["warm"], final) if final is not None else None
        for start in ("cold", "warm"):
            by_minute = {p["minutes"]: p for p in r[start]}
            cells = [f"{by_minute[m]['score']:.2f} ({by_minute[m]['updates']})" if m in by_minute
                     and by_minute[m]["score"] is not None else "" for m in all_marks]
            tail = (f"{reach:g} min" if reach is not None else "not within the marks") if start == "warm" else ""
            print(f"| {prompt} | {start} | " + " | ".join(cells) + f" | {tail} |")
    print("\n(cells: score (actor-critic updates so far); cold final score is the reference)")


if __name__ == "__main__":
    main()

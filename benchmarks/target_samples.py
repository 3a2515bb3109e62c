"""Does a best-of-N target (genrl_core/target_choice.py) learn a better policy than the connector's
mode rollout? The same learner, budget and seeds from both targets, scored in the real simulator.

    .venv/bin/python benchmarks/target_samples.py --bundle checkpoints/walker --samples 0,32 --seeds 0,1
    .venv/bin/python benchmarks/target_samples.py --report runs/target_samples      # the table of a run

For each prompt, each `--samples` value (0: the mode rollout) and each learning seed, a policy
learns from scratch for `--updates` updates (no time limit, so that a loaded machine changes nothing
but the wall time) into OUT/policies, then plays `--episodes` real episodes from seed 1000 (mean
actions). The VLM's score of each target (mean window similarity to the prompt) is printed beside.
A rerun skips what is finished: policies are reused by their slug, results by their file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from genrl_core.agent import GenRL
from genrl_core.target_choice import SCORED_STATES, video_similarity

PROMPTS = {"walk forward": "walker_walk", "run fast": "walker_run"}


def run_one(agent: GenRL, prompt: str, task: str, samples: int, seed: int, updates: int, episodes: int) -> dict:
    settings = {"target_samples": samples, "seed": seed, "updates": updates, "max_minutes": 0}
    plan = agent.plan(prompt, settings)
    frames = agent.decode(plan.target[:SCORED_STATES])[None]
    vlm_score = float(video_similarity(agent.vlm, frames, agent.embed_prompt(prompt, use_aligner=False))[0])
    policy = agent.learn(plan)
    ev = agent.evaluate(policy, task, episodes=episodes, seed=1000)
    return {"prompt": prompt, "task": task, "samples": samples, "seed": seed, "slug": policy.slug,
            "updates": policy.meta.updates_done, "learn_minutes": round(policy.meta.train_seconds / 60, 1),
            "target_vlm_score": round(vlm_score, 3), "normalised": ev["normalised"], "returns": ev["returns"]}


def report(out: Path) -> str:
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    if not rows:
        return f"no results in {out}"
    lines = ["| prompt | target | seed | target's VLM score | normalised | returns | updates | learn min |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["prompt"], r["samples"], r["seed"])):
        kind = "mode rollout" if r["samples"] == 0 else f"best of {r['samples']}"
        returns = ", ".join(f"{x:.0f}" for x in r["returns"])
        lines.append(f"| {r['prompt']} | {kind} | {r['seed']} | {r['target_vlm_score']:.3f} | {r['normalised']:.3f} "
                     f"| {returns} | {r['updates']} | {r['learn_minutes']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="checkpoints/walker")
    parser.add_argument("--out", default="runs/target_samples", help="policies and one result file per run")
    parser.add_argument("--prompts", default=",".join(PROMPTS), help=f"comma-separated, from {', '.join(PROMPTS)}")
    parser.add_argument("--samples", default="0,32", help="comma-separated target_samples values (0: mode rollout)")
    parser.add_argument("--seeds", default="0,1", help="comma-separated learning seeds")
    parser.add_argument("--updates", type=int, default=2000, help="actor-critic updates per policy")
    parser.add_argument("--episodes", type=int, default=8, help="real episodes per policy (seeds 1000, 1001, ...)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (run two of these side by side)")
    parser.add_argument("--report", default=None, help="only print the table of this output folder")
    args = parser.parse_args()
    if args.report:
        print(report(Path(args.report)))
        return
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prompts = [p.strip() for p in args.prompts.split(",")]
    unknown = [p for p in prompts if p not in PROMPTS]
    if unknown:
        parser.error(f"unknown prompt(s) {unknown}; valid: {', '.join(PROMPTS)}")
    agent = GenRL.load(args.bundle, policies_dir=out / "policies")
    for prompt in prompts:
        for samples in map(int, args.samples.split(",")):
            for seed in map(int, args.seeds.split(",")):
                name = out / f"{prompt.replace(' ', '_')}-{samples}-{seed}.json"
                if name.exists():
                    continue
                row = run_one(agent, prompt, PROMPTS[prompt], samples, seed, args.updates, args.episodes)
                name.write_text(json.dumps(row))
                print(json.dumps(row), flush=True)
    print(report(out))


if __name__ == "__main__":
    main()

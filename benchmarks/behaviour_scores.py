"""Prompt -> policy -> true score: the table that says whether the product works.

    python benchmarks/behaviour_scores.py --bundle checkpoints/walker --episodes 5   # defaults: <= 20 min each
    python benchmarks/behaviour_scores.py --tasks walker_stand,walker_walk --minutes 5 --ablation-tasks ''
    python benchmarks/behaviour_scores.py --generalist --no-learn --episodes 3   # zero-shot column only
    python benchmarks/behaviour_scores.py --generalist --refine-minutes 5 --no-learn  # and refined from it

For each (task, prompt) pair: learn a policy in imagination (at most --minutes or --updates),
roll it in the real simulator from pixels for --episodes episodes of 1000 env steps and score
it with the task's true reward, normalised with `genrl_core.evaluate.REFERENCE_RETURNS`.
In the same run: a uniform random policy on the same seeds (the floor) and, for
--ablation-tasks, the same prompt learned with the aligner switched off. Held-out tasks (no
expert data in the walker dataset) are marked. Policies are reused when rerun, so an
interrupted run continues where it stopped; results also go to --out as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from genrl_core.agent import GenRL
from genrl_core.envs import STOCK_PROMPTS, PixelEnv, body_tasks
from genrl_core.evaluate import normalised_score

PROMPTS = {t.name: STOCK_PROMPTS[t.name] for t in body_tasks("walker")}
IN_DATASET = {"walker_stand", "walker_walk", "walker_run", "walker_lying_down", "walker_sit_knees"}


def random_returns(body: str, episodes: int, seed: int) -> dict[str, float]:
    """Mean true return of a uniform random policy for every task of the body, from the same
    episodes (each step reports all tasks' rewards; standard ones equal dm_control's)."""
    totals = []
    for i in range(episodes):
        env, rng = PixelEnv(body, seed=seed + i), np.random.default_rng(seed + i)
        step, total = env.reset(), 0.0
        while not step.is_last:
            step = env.step(rng.uniform(-1, 1, env.action_dim))
            total = total + step.task_rewards
        totals.append(total)
    return dict(zip(env.task_names, np.mean(totals, 0).tolist(), strict=True))


def run_one(agent: GenRL, task: str, prompt: str, settings: dict, episodes: int, seed: int, video_dir: Path) -> dict:
    policy = agent.learn(prompt, settings, progress=True)
    video = video_dir / f"{policy.slug}_{task}.mp4"
    ev = agent.evaluate(policy, task, episodes=episodes, seed=seed, video=video)
    return {"slug": policy.slug, "updates": policy.meta.updates_done, "learn_seconds": policy.meta.train_seconds,
            "mean_return": ev["mean_return"], "normalised": ev["normalised"], "returns": ev["returns"]}


def run_instant(agent: GenRL, task: str, prompt: str, episodes: int, seed: int, video_dir: Path) -> dict:
    """The bundle's generalist on the prompt, zero-shot: no learning, scored as a learned policy is."""
    policy = agent.act(prompt)
    ev = agent.evaluate(policy, task, episodes=episodes, seed=seed, video=video_dir / f"instant_{task}.mp4")
    return {"generalist_updates": policy.meta.updates_done, "mean_return": ev["mean_return"],
            "normalised": ev["normalised"], "returns": ev["returns"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="checkpoints/walker", help="bundle folder")
    ap.add_argument("--policies-dir", default="runs/behaviour_scores/policies", help="where policies are learned")
    ap.add_argument("--tasks", default=",".join(PROMPTS), help="comma-separated tasks (prompts are fixed per task)")
    ap.add_argument("--minutes", type=float, default=None,
                    help="learning time limit per policy (default: the small preset's, 20; at most 20 is the aim)")
    ap.add_argument("--updates", type=int, default=None, help="update limit per policy (default: the preset's)")
    ap.add_argument("--episodes", type=int, default=5, help="evaluation episodes per policy")
    ap.add_argument("--seed", type=int, default=1000, help="first evaluation seed")
    ap.add_argument("--ablation-tasks", default="walker_stand,walker_walk",
                    help="tasks that also get an aligner-off policy (comma-separated; empty for none)")
    ap.add_argument("--generalist", action="store_true",
                    help="add a zero-shot column: the bundle's generalist (genrl train-generalist) on each prompt")
    ap.add_argument("--refine-minutes", type=float, default=0.0,
                    help="add a column: the generalist refined on each prompt (init=generalist) for this long")
    ap.add_argument("--no-learn", action="store_true", help="skip per-prompt learning from scratch (e.g. zero-shot "
                                                              "only)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--out", default="runs/behaviour_scores/scores.json", help="results JSON")
    args = ap.parse_args()
    agent = GenRL.load(args.bundle, device=args.device, policies_dir=args.policies_dir)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.exists() else {}
    # default settings give the same policies (slugs) as `genrl learn PROMPT` and the app
    base = {k: v for k, v in (("updates", args.updates), ("max_minutes", args.minutes)) if v is not None}
    randoms = None
    for task in args.tasks.split(","):
        if task not in PROMPTS:
            raise SystemExit(f"no prompt for task {task!r}; known: {', '.join(PROMPTS)}")
        row = results.get(task, {})
        row["prompt"] = PROMPTS[task]
        if "random" not in row:
            if randoms is None:
                randoms = random_returns(agent.body, args.episodes, args.seed)
            ret = randoms[task]
            row["random"] = {"mean_return": round(ret, 1), "normalised": round(normalised_score(task, ret), 3)}
        if args.generalist:
            row["instant"] = run_instant(agent, task, PROMPTS[task], args.episodes, args.seed, out.parent / "videos")
            results[task] = row
            out.write_text(json.dumps(results, indent=1))
        variants = {} if args.no_learn else {"genrl": base}
        if task in args.ablation_tasks.split(",") and not args.no_learn:
            variants["no_aligner"] = {**base, "use_aligner": False}
        if args.refine_minutes:
            variants["refined"] = {**base, "init": "generalist", "max_minutes": args.refine_minutes}
        for name, settings in variants.items():
            row[name] = run_one(agent, task, PROMPTS[task], settings, args.episodes, args.seed, out.parent / "videos")
            results[task] = row
            out.write_text(json.dumps(results, indent=1))
    cfg = agent.behaviour_config(base)
    print(f"\n{args.episodes} episodes per policy, seeds {args.seed}+; learning <= {cfg.max_minutes} min / "
          f"{cfg.updates} updates; device {args.device}")
    print("| task | in data | prompt | GenRL score | return | learn min | updates | zero-shot score | "
          "refined score | refine min | random score | no-aligner score |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for task, row in results.items():
        g, r, a, z = row.get("genrl", {}), row["random"], row.get("no_aligner", {}), row.get("instant", {})
        f = row.get("refined", {})
        fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
        print(f"| {task} | {'yes' if task in IN_DATASET else 'held out'} | {row['prompt']} | "
              f"{fmt(g.get('normalised'))} | {g.get('mean_return', 'n/a')} | "
              f"{g.get('learn_seconds', 0) / 60:.1f} | {g.get('updates', 'n/a')} | {fmt(z.get('normalised'))} | "
              f"{fmt(f.get('normalised'))} | {f.get('learn_seconds', 0) / 60:.1f} | "
              f"{fmt(r['normalised'])} | {fmt(a.get('normalised'))} |")


if __name__ == "__main__":
    main()

"""Prompt -> policy -> true score: the table that says whether the product works.

    python benchmarks/behaviour_scores.py --bundle checkpoints/walker --episodes 5   # defaults: <= 20 min each
    python benchmarks/behaviour_scores.py --tasks walker_stand,walker_walk --minutes 5 --ablation-tasks ''
    python benchmarks/behaviour_scores.py --generalist --no-learn --episodes 3   # zero-shot column only
    python benchmarks/behaviour_scores.py --generalist --refine-minutes 5 --no-learn  # and refined from it
    python benchmarks/behaviour_scores.py --all-bodies --episodes 3   # GenRL's Table 1 beside ours, every body

For each (task, prompt) pair: learn a policy in imagination (at most --minutes or --updates),
roll it in the real simulator from pixels for --episodes episodes of 1000 env steps and score
it with the task's true reward, normalised with `genrl_core.evaluate.REFERENCE_RETURNS`.
In the same run: a uniform random policy on the same seeds (the floor) and, for
--ablation-tasks, the same prompt learned with the aligner switched off. Held-out tasks (no
expert data in the walker dataset) are marked. Policies are reused when rerun, so an
interrupted run continues where it stopped; results also go to --out as JSON.

--all-bodies: for every body with a bundle in --checkpoints (checkpoints/BODY), the stock prompt
(`envs.tasks.STOCK_PROMPTS`) of each of the paper's standard and held-out tasks, learned with the
default settings (so the shipped policies are reused), set beside GenRL's Table 1 and the random
floor; a body without a bundle shows "no bundle" and counts in no mean.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from genrl_core.agent import GenRL
from genrl_core.envs import STOCK_PROMPTS, body_tasks
from genrl_core.evaluate import normalised_score, random_returns

PROMPTS = {t.name: STOCK_PROMPTS[t.name] for t in body_tasks("walker")}
IN_DATASET = {"walker_stand", "walker_walk", "walker_run", "walker_lying_down", "walker_sit_knees"}


# GenRL v2 Table 1 (text prompts, normalised, 10 seeds) and its held-out tasks (read from the bar charts)
PAPER_STANDARD = {"walker_stand": 1.02, "walker_walk": 1.01, "walker_run": 0.77, "cheetah_run": 0.74,
                  "quadruped_stand": 0.97, "quadruped_walk": 0.93, "quadruped_run": 0.86,
                  "stickman_stand": 0.70, "stickman_walk": 0.83, "stickman_run": 0.35}
PAPER_HELD_OUT = {"walker_one_foot": 0.66, "walker_high_kick": 0.48, "walker_lying_down": 0.79,
                  "walker_sit_knees": 0.86, "walker_flip": 0.35, "cheetah_standing": 0.96, "cheetah_lying_down": 1.08,
                  "quadruped_jump": 0.80, "quadruped_two_legs": 0.91, "quadruped_lie_down": 0.97}
ALL_BODIES = ("walker", "cheetah", "quadruped", "stickman")


def score_body(bundle: Path, tasks: list[str], episodes: int, seed: int, device: str, policies: Path,
               results: dict, save) -> None:
    agent = GenRL.load(bundle, device=device, policies_dir=policies)
    floor = None
    for task in tasks:
        if task in results:
            continue
        if floor is None:
            floor = random_returns(agent.body, episodes, seed)
        policy = agent.learn(STOCK_PROMPTS[task], progress=True)
        ev = agent.evaluate(policy, task, episodes=episodes, seed=seed)
        results[task] = {"prompt": STOCK_PROMPTS[task], "slug": policy.slug, "normalised": ev["normalised"],
                         "mean_return": ev["mean_return"], "random_return": round(floor[task], 1),
                         "random": normalised_score(task, floor[task])}
        save()


def table(results: dict, bodies: list[str], checkpoints: Path) -> str:
    fmt = lambda x: "n/a" if x is None else f"{x:.2f}"  # noqa: E731
    lines = ["| body | task | kind | paper | ours | random |", "|---|---|---|---|---|---|"]
    ours_standard = []
    for kind, paper in (("standard", PAPER_STANDARD), ("held out", PAPER_HELD_OUT)):
        for task, theirs in paper.items():
            body = task.split("_")[0]
            if body not in bodies:
                continue
            row = results.get(task)
            if row is None:
                missing = "no bundle" if not (checkpoints / body).exists() else "not run"
                lines.append(f"| {body} | {task} | {kind} | {theirs:.2f} | {missing} | |")
                continue
            if kind == "standard" and row["normalised"] is not None:
                ours_standard.append(row["normalised"])
            lines.append(f"| {body} | {task} | {kind} | {theirs:.2f} | {fmt(row['normalised'])} "
                         f"| {fmt(row['random'])} |")
    paper_mean = sum(PAPER_STANDARD.values()) / len(PAPER_STANDARD)
    ours = f"{sum(ours_standard) / len(ours_standard):.2f}" if ours_standard else "n/a"
    lines.append(f"\nmean of the {len(PAPER_STANDARD)} standard tasks: paper {paper_mean:.2f}; ours {ours} over the "
                 f"{len(ours_standard)} measured")
    return "\n".join(lines)


def all_bodies(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    bodies = args.bodies.split(",")
    if unknown := set(bodies) - set(ALL_BODIES):
        ap.error(f"unknown bodies {sorted(unknown)}; valid: {', '.join(ALL_BODIES)}")
    out, checkpoints = Path(args.out), Path(args.checkpoints)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.exists() else {}

    def save() -> None:
        out.write_text(json.dumps(results, indent=1))

    for body in bodies:
        if not (checkpoints / body).exists():
            print(f"[scores] {body}: no bundle in {checkpoints / body}", flush=True)
            continue
        tasks = [t for t in (*PAPER_STANDARD, *PAPER_HELD_OUT) if t.startswith(f"{body}_")]
        score_body(checkpoints / body, tasks, args.episodes, args.seed, args.device, Path(args.policies_dir),
                   results, save)
    print(f"{args.episodes} episodes per policy, seeds {args.seed}+\n")
    print(table(results, bodies, checkpoints))


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
    ap.add_argument("--all-bodies", action="store_true", help="GenRL's Table 1 rows for every body (see above)")
    ap.add_argument("--checkpoints", default="checkpoints", help="with --all-bodies: the bundles, one folder per body")
    ap.add_argument("--bodies", default=",".join(ALL_BODIES), help="with --all-bodies: comma-separated bodies")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--out", default="runs/behaviour_scores/scores.json", help="results JSON")
    args = ap.parse_args()
    if args.all_bodies:
        all_bodies(ap, args)
        return
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

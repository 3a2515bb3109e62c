"""The score ladder: where between the world model and the words is the score lost?

    python benchmarks/score_ladder.py --bundle checkpoints/walker --data data/walker            # full ladder
    python benchmarks/score_ladder.py --rungs oracle,expert,text,paraphrase --paraphrases 1    # reduced
    python benchmarks/score_ladder.py --report runs/ladder                                     # table only

For each task with expert data, the same learner with the same budget (--updates, --minutes)
learns from five reward sources, and each policy is scored in the real simulator with the
task's true reward (--episodes from --seed), normalised by `REFERENCE_RETURNS`:

  oracle      a reward head on the world model's latents, fitted to the dataset's true task
              reward (`genrl train-reward-heads`): the ceiling of world model + actor-critic
  expert      target = the world model's posterior states of the best 17-step window of the
              best held-out expert episode of the task: no VLM, no connector
  video       the same window's frames as a video prompt (an mp4 at the agent's rate), through
              the VLM, the aligner and the connector
  text        the stock text prompt
  paraphrase  prompts written for this benchmark, in no caption template
  generalist  the bundle's generalist on the stock prompt, zero-shot (no learning, no budget)
  refined     the generalist refined on the stock prompt (`init=generalist`) for --refine-minutes

Tasks with no expert data in --data (the held-out ones: legs_up, one_foot, high_kick, flip) get the
rungs that need none: text, generalist and refined.

Each (task, rung, prompt) is one JSON file in --out, written when done; policies are kept
in --out/policies and reused, so an interrupted ladder continues where it stopped and two
processes can share the work (say `--tasks walker_walk` and `--tasks walker_run`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from genrl_core.agent import GenRL
from genrl_core.bundle import read_config
from genrl_core.config import BehaviourConfig, apply_settings, parse_settings
from genrl_core.data.store import EpisodeStore, read_arrays
from genrl_core.envs import STOCK_PROMPTS, body_tasks
from genrl_core.video import AGENT_FPS, write_mp4

RUNGS = ("oracle", "expert", "video", "text", "paraphrase", "generalist", "refined")
EXPERT_RUNGS = ("oracle", "expert", "video")  # need the task's expert episodes (and reward head)
HELD_OUT = ("walker_legs_up", "walker_one_foot", "walker_high_kick", "walker_flip")
TEXT_PROMPTS = {t.name: STOCK_PROMPTS[t.name] for t in body_tasks("walker")}
# never in a caption template (genrl_core/vlm/captions.py): checked by tests/test_oracle.py
PARAPHRASES = {
    "walker_stand": ["hold a tall upright pose", "remain on your feet without moving",
                     "keep your body vertical and balanced"],
    "walker_walk": ["stroll forward at an easy pace", "a person walking calmly",
                    "move ahead with slow steady steps"],
    "walker_run": ["dash ahead at top speed", "race forward as quickly as you can",
                   "a rapid sprint toward the horizon"],
    "walker_lying_down": ["rest flat on the floor", "stretch out on the ground and stay there",
                          "lay your whole body down"],
    "walker_sit_knees": ["rest on bent knees", "drop down onto both knees and stay",
                         "a kneeling pose with the shins on the floor"],
}


def best_episode(paths: list[Path]) -> Path:
    """The episode with the highest return. An expert run can fail (five of the walker stand expert's
    16 episodes end up sitting, returns 186-275), and its best window would then be another behaviour."""
    return max(paths, key=lambda p: float(read_arrays(p, ("reward",))["reward"].sum()))


def expert_episode(bundle: Path, data: Path, task: str, unseen: Path | None = None) -> tuple[Path, bool]:
    """The best held-out expert episode of the task: from `unseen` (a dataset no part of the bundle was
    trained on), else from the world model's own held-out split, else (not held out) the best of all."""
    if unseen is not None:
        fresh = [p for p in EpisodeStore(unseen).paths() if p.name.startswith(f"expert_{task}-")]
        if fresh:
            return best_episode(fresh), True
    held = [data / n for n in read_config(bundle).get("world_model_heldout", []) if n.startswith(f"expert_{task}-")]
    held = [p for p in held if p.exists()]
    if held:
        return best_episode(held), True
    paths = [p for p in EpisodeStore(data).paths() if p.name.startswith(f"expert_{task}-")]
    if not paths:
        raise FileNotFoundError(f"no expert_{task} episodes in {data}")
    return best_episode(paths), False


@torch.no_grad()
def expert_window(agent: GenRL, path: Path, task: str, length: int) -> tuple[torch.Tensor, np.ndarray, int]:
    """(posterior mode states (length, stoch, classes), frames, start) of the episode's window of
    `length` steps with the highest true task reward, after the first 50 steps."""
    ep = read_arrays(path, ("image", "action", "is_first", "task_rewards", "task_names"))
    rewards = ep["task_rewards"][:, list(ep["task_names"]).index(task)]
    sums = np.convolve(rewards, np.ones(length), "valid")
    start = 50 + int(np.argmax(sums[50:]))
    obs = agent.wm.observe(*(torch.from_numpy(ep[k])[None].to(agent.device) for k in ("image", "action", "is_first")),
                           sample=False)
    return obs["stoch"][0, start: start + length].clone(), ep["image"], start  # clone: not the whole episode


def export_job(agent: GenRL, prompt: str | Path, settings: dict, target: torch.Tensor | None) -> dict:
    """Everything `scripts/gpu_learn.py` needs to learn this rung's policy on a box without the VLM:
    the target states, the settings and the meta `GenRL.learn` would write, under the same slug, so
    that rerunning the ladder here finds the policy finished and only evaluates it."""
    plan = agent.plan(prompt, settings, target)  # as learn() plans it
    return {"slug": plan.slug, "target": plan.target.cpu(), "meta": agent.policy_meta(plan).to_dict()}


def run_rung(agent: GenRL, task: str, rung: str, prompt: str, settings: dict, target: torch.Tensor | None,
             episodes: int, seed: int, out: Path) -> dict:
    t0 = time.time()
    if rung == "generalist":  # zero-shot: the generalist's updates and minutes are its own, not this budget's
        policy = agent.act(prompt)
    else:
        policy = agent.learn(prompt, settings, progress=False, target=target)
    meta = policy.meta
    ev = agent.evaluate(policy, task, episodes=episodes, seed=seed, video=out / "videos" / f"{policy.slug}.mp4")
    return {"task": task, "rung": rung, "prompt": str(prompt), "slug": policy.slug, "normalised": ev["normalised"],
            "mean_return": ev["mean_return"],
            "imagined_return": agent.imagined_return(policy, task, episodes, seed),
            "returns": ev["returns"], "updates": meta.updates_done,
            "learn_minutes": round(meta.train_seconds / 60, 1), "wall_minutes": round((time.time() - t0) / 60, 1),
            "device": meta.device or str(agent.device), "episodes": episodes, "seed": seed, "settings": settings}


def report(out: Path) -> str:
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    if not rows:
        return f"no results in {out}"
    lines = ["| task | rung | prompt | normalised | return | imagined return | updates | learn min | learned on |",
             "|---|---|---|---|---|---|---|---|---|"]
    order = {r: i for i, r in enumerate(RUNGS)}
    for r in sorted(rows, key=lambda r: (r["task"], order.get(r["rung"], 9), r["prompt"])):
        imagined = "" if r.get("imagined_return") is None else f"{r['imagined_return']:.0f}"
        lines.append(f"| {r['task']} | {r['rung']} | {Path(r['prompt']).name if r['rung'] == 'video' else r['prompt']} "
                     f"| {r['normalised']:.2f} | {r['mean_return']:.0f} | {imagined} | {r['updates']} "
                     f"| {r['learn_minutes']} | {r['device']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="checkpoints/walker", help="bundle (needs reward_heads.pt for oracle)")
    parser.add_argument("--data", default="data/walker", help="dataset with expert episodes and task rewards")
    parser.add_argument("--unseen-data", default=None, metavar="DIR",
                        help="expert episodes collected apart (e.g. another seed) that nothing was trained on: "
                             "the expert and video rungs use these first")
    parser.add_argument("--tasks", default="walker_stand,walker_walk,walker_run",
                        help=f"comma-separated tasks (the held-out ones: {','.join(HELD_OUT)})")
    parser.add_argument("--rungs", default=",".join(RUNGS), help=f"comma-separated subset of {','.join(RUNGS)}")
    parser.add_argument("--paraphrases", type=int, default=3, help="paraphrases per task (1 for a reduced ladder)")
    parser.add_argument("--updates", type=int, default=3000, help="learner updates per rung (same for all)")
    parser.add_argument("--minutes", type=float, default=7.0, help="and at most this many minutes of learning")
    parser.add_argument("--refine-minutes", type=float, default=5.0,
                        help="minutes of learning of the refined rung (from the generalist)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="other behaviour settings")
    parser.add_argument("--episodes", type=int, default=3, help="real episodes per policy (1000 env steps each)")
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first real episode")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--out", default="runs/ladder", help="results (one JSON per rung), videos and policies")
    parser.add_argument("--report", default=None, metavar="DIR", help="only print the table of results in DIR")
    parser.add_argument("--export-jobs", default=None, metavar="FILE",
                        help="learn nothing: write the rungs' targets and metas for scripts/gpu_learn.py")
    args = parser.parse_args()
    if args.report:
        print(report(Path(args.report)))
        return
    rungs = args.rungs.split(",")
    unknown = set(rungs) - set(RUNGS)
    if unknown:
        parser.error(f"unknown rungs {sorted(unknown)}; valid: {', '.join(RUNGS)}")
    try:
        settings = {"updates": args.updates, "max_minutes": args.minutes,
                    **parse_settings(args.set)}
        apply_settings(BehaviourConfig(), settings, "behaviour")  # bad settings fail before the bundle loads
    except ValueError as exc:
        parser.error(str(exc))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    agent = GenRL.load(args.bundle, device=args.device, policies_dir=out / "policies")
    horizon = agent.behaviour_config(settings).horizon
    jobs = []
    for task in args.tasks.split(","):
        if task not in TEXT_PROMPTS:
            parser.error(f"unknown task {task!r}; valid: {', '.join(TEXT_PROMPTS)}")
        stock = TEXT_PROMPTS[task]
        plan = {"text": [(stock, {}, None)],
                "paraphrase": [(p, {}, None) for p in PARAPHRASES.get(task, [])[: args.paraphrases]],
                "generalist": [(stock, {}, None)],
                "refined": [(stock, {"init": "generalist", "max_minutes": args.refine_minutes}, None)]}
        if any(r in EXPERT_RUNGS for r in rungs):
            try:
                path, held_out = expert_episode(Path(args.bundle), Path(args.data), task,
                                                Path(args.unseen_data) if args.unseen_data else None)
            except FileNotFoundError:
                print(f"[ladder] {task}: no expert episodes (held out): only {', '.join(plan)}", flush=True)
            else:
                target, frames, start = expert_window(agent, path, task, horizon + 1)
                clip = write_mp4(out / "videos" / f"expert_{task}_{start}.mp4", frames[start: start + horizon + 1],
                                 fps=int(AGENT_FPS))
                print(f"[ladder] {task}: expert window {path.name}[{start}:{start + horizon + 1}] "
                      f"({'held out' if held_out else 'NOT held out'})", flush=True)
                plan.update({"oracle": [(f"oracle {task}", {"reward": f"oracle:{task}"}, None)],
                             "expert": [(f"expert latents {path.stem}[{start}]", {}, target)],
                             "video": [(clip, {}, None)]})
        for rung in [r for r in rungs if r in plan]:
            for prompt, extra, tgt in plan[rung]:
                name = f"{task}__{rung}__{hashlib.sha1(str(prompt).encode()).hexdigest()[:8]}.json"
                result_path = out / name
                if args.export_jobs and rung in ("generalist", "refined"):
                    continue  # zero-shot has nothing to learn; refining needs the generalist, not in the export
                if args.export_jobs:
                    jobs.append(export_job(agent, prompt, {**settings, **extra}, tgt))
                    continue
                if result_path.exists():
                    row = json.loads(result_path.read_text())
                    if "imagined_return" not in row:  # results from before that column
                        row["imagined_return"] = agent.imagined_return(row["slug"], task, args.episodes, args.seed)
                        result_path.write_text(json.dumps(row, indent=1))
                    continue
                row = run_rung(agent, task, rung, prompt, {**settings, **extra}, tgt, args.episodes, args.seed, out)
                result_path.write_text(json.dumps(row, indent=1))
                print(f"[ladder] {task} {rung:10s} {str(prompt)[:40]:40s} normalised {row['normalised']:.2f} "
                      f"(return {row['mean_return']}, {row['updates']} updates, {row['learn_minutes']} min)",
                      flush=True)
    if args.export_jobs:
        torch.save(jobs, args.export_jobs)
        print(f"[ladder] {len(jobs)} jobs -> {args.export_jobs}")
        return
    print(report(out))


if __name__ == "__main__":
    main()

"""Does a prompt's reward rank real episodes as the task's true reward does? No learning needed.

    .venv/bin/python benchmarks/reward_fidelity.py --bundle checkpoints/walker --data data/walker
    .venv/bin/python benchmarks/reward_fidelity.py --data data/walker --data runs/practice/data \\
        --rewards max_cosine,pose_motion --target-samples 0,32

Every episode of the `--data` folders is filtered by the world model (posterior modes). Each
prompt's target (`--target-samples`: 0 the connector's mode rollout, N > 0 best of N) then scores
each 17-state window of it with each reward kind, exactly as learning scores an imagined window
(temporal alignment included); the true reward of the prompt's task is read from the episode's
`task_rewards` over the same steps. Per prompt, reward kind and target:

  rank all       Spearman correlation of the episode means, over every episode
  rank acting    the same over episodes of acting policies only (no random or reset ones):
                 does the reward tell a walker that walks from one that stands?
  top kinds      the episode kinds the reward scores highest (the recorded policy: "expert:TASK",
                 a practice driver's "practice:SPEC", "random", "reset")

A reward an actor can satisfy by standing still scores standing episodes first for "walk
forward"; learning then finds that. A cheap screen before 20-minute learning runs, not a
replacement for real scores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from genrl_core.agent import GenRL
from genrl_core.config import check_target_samples
from genrl_core.data.store import read_arrays
from genrl_core.errors import ConfigError
from genrl_core.models.reward import REWARD_KINDS, aligned_reward, similarity_matrix

PROMPTS = {"walk forward": "walker_walk", "run fast": "walker_run", "stand up straight": "walker_stand"}
PASSIVE_POLICIES = ("random", "reset")  # no acting policy: their episodes are the floor
WINDOW_STRIDE = 8


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


@torch.no_grad()
def filtered_episodes(agent: GenRL, folders: list[Path]) -> list[dict]:
    episodes = []
    for folder in folders:
        for path in sorted(folder.glob("*.npz")):
            ep = read_arrays(path, ("image", "action", "is_first", "task_rewards", "task_names", "policy"))
            post = agent.wm.observe(torch.from_numpy(ep["image"][None]), torch.from_numpy(ep["action"][None]),
                                    torch.from_numpy(ep["is_first"][None]), sample=False)
            episodes.append({"stoch": post["stoch"][0], "task_rewards": ep["task_rewards"],
                             "task_names": [str(n) for n in ep["task_names"]], "kind": str(ep["policy"])})
    if not episodes:
        raise SystemExit(f"no episodes in {', '.join(map(str, folders))}")
    return episodes


@torch.no_grad()
def score(agent: GenRL, episodes: list[dict], target: torch.Tensor, reward: str, task: str, align: int) -> dict:
    window = len(target)
    ours, true, by_kind = [], [], {}
    for ep in episodes:
        starts = range(0, len(ep["stoch"]) - window, WINDOW_STRIDE)
        windows = torch.stack([ep["stoch"][t:t + window] for t in starts])
        r = aligned_reward(similarity_matrix(reward, agent.wm, windows, target), align)[0].mean()
        column = ep["task_names"].index(task)
        ours.append(float(r))
        true.append(float(np.mean([ep["task_rewards"][t:t + window, column].mean() for t in starts])))
        by_kind.setdefault(ep["kind"], []).append(float(r))
    acting = [i for i, ep in enumerate(episodes) if ep["kind"] not in PASSIVE_POLICIES]
    means = {kind: float(np.mean(v)) for kind, v in by_kind.items()}
    return {"rank_all": spearman(ours, true),
            "rank_acting": spearman([ours[i] for i in acting], [true[i] for i in acting]) if len(acting) > 2 else None,
            "top": sorted(means, key=means.get, reverse=True)[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="checkpoints/walker")
    parser.add_argument("--data", action="append", type=Path, help="episode folder (repeatable; default data/walker)")
    parser.add_argument("--prompts", default=",".join(PROMPTS), help=f"comma-separated, from {', '.join(PROMPTS)}")
    parser.add_argument("--rewards", default=",".join(REWARD_KINDS), help="comma-separated trajectory-matching kinds")
    parser.add_argument("--target-samples", default="0,32", help="comma-separated: 0 the mode rollout, N best of N")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (leave the rest to training)")
    args = parser.parse_args()
    try:
        target_samples = [int(n) for n in args.target_samples.split(",")]
        for n in target_samples:
            check_target_samples(n, "--target-samples")
    except (ValueError, ConfigError) as exc:
        parser.error(f"--target-samples {args.target_samples!r}: {exc}")
    prompts = args.prompts.split(",")
    for p in prompts:
        if p not in PROMPTS:
            parser.error(f"--prompts: unknown {p!r}; valid: {', '.join(PROMPTS)}")
    rewards = args.rewards.split(",")
    for r in rewards:
        if r not in REWARD_KINDS:
            parser.error(f"--rewards: unknown {r!r}; valid: {', '.join(REWARD_KINDS)}")
    torch.set_num_threads(args.threads)
    agent = GenRL.load(args.bundle)
    cfg = agent.behaviour_config()
    episodes = filtered_episodes(agent, args.data or [Path("data/walker")])
    print(f"{len(episodes)} episodes; windows of {cfg.horizon + 1} states every {WINDOW_STRIDE}\n")
    print("| prompt | target | reward | rank all | rank acting | top kinds |")
    print("|---|---|---|---|---|---|")
    for prompt in prompts:
        for samples in target_samples:
            target = agent.target(prompt, cfg.horizon + 1, cfg.use_aligner, samples)
            kind = "mode rollout" if samples == 0 else f"best of {samples}"
            for reward in rewards:
                row = score(agent, episodes, target, reward, PROMPTS[prompt], cfg.align_states)
                acting = "" if row["rank_acting"] is None else f"{row['rank_acting']:.2f}"
                print(f"| {prompt} | {kind} | {reward} | {row['rank_all']:.2f} | {acting} | "
                      f"{', '.join(row['top'])} |", flush=True)


if __name__ == "__main__":
    main()

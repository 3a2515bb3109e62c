"""Where do imagination and the simulator part for a learned policy?

    python benchmarks/imagination_gap.py --bundle checkpoints/walker --task walker_walk \
        --policy runs/ladder/policies/oracle-walker-walk-XXXX [--episodes 2]

The policy acts in the real task from pixels (as `genrl evaluate` does). Along each real
episode, the bundle's oracle reward head (`genrl train-reward-heads`) scores:

  posterior   the world model's filtered states of the real frames: is the reward head right
              on the states this policy visits?
  open loop   states imagined for `--window` steps from each filtered state with the actions the
              policy really took: are the dynamics right where this policy goes?
  imagined    the policy acting in imagination for the whole episode from the same reset frame
              (the ladder's "imagined return"): what the learner optimised.

Each is printed next to the true return over the same steps. A head that is right on
posteriors but an open loop that overestimates means the actor learned to exploit errors of
the dynamics on states the dataset does not cover.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from genrl_core.agent import GenRL
from genrl_core.evaluate import run_policy
from genrl_core.models.actor_critic import feature


@torch.no_grad()
def gaps(agent: GenRL, slug: str, task: str, seed: int, window: int) -> dict[str, float]:
    heads = agent.files.load_reward_heads(agent.wm)
    column = heads.column(task)
    actor, _ = agent.load_policy(slug)
    ep = {k: v[0] for k, v in run_policy(agent.wm, actor, task, 1, seed, keep_latents=True)["latents"].items()}
    n = len(ep["reward"])
    # reward of reaching state t+1 is what the env paid for the action at t
    posterior = heads(feature(ep["deter"][1:], ep["stoch"][1:]))[:, column]
    starts = torch.arange(0, n - window, window // 2, device=agent.device)
    idx = starts[:, None] + torch.arange(window, device=agent.device)
    rolled = agent.wm.imagine(ep["deter"][starts], ep["stoch"][starts], ep["action"][idx + 1], sample=False)
    open_loop = heads(feature(rolled["deter"][:, 1:], rolled["stoch"][:, 1:]))[..., column]
    truth_windows = ep["reward"][idx + 1]
    imagined = agent.rollout(slug, *agent.real_start(1, seed), n - 1)
    imagined_reward = heads(feature(imagined["deter"][:, 1:], imagined["stoch"][:, 1:]))[..., column]
    return {"true return": float(ep["reward"].sum()), "posterior return": float(posterior.sum()),
            "true reward on posterior steps": float(ep["reward"][1:].sum()),
            f"open-loop {window}-step return (mean)": float(open_loop.sum(1).mean()),
            f"true {window}-step return (mean)": float(truth_windows.sum(1).mean()),
            "imagined return": float(imagined_reward.sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="checkpoints/walker", help="bundle with reward_heads.pt")
    ap.add_argument("--policy", required=True, help="a policy slug or folder learned on this bundle")
    ap.add_argument("--task", required=True, help="task whose true reward scores the policy, e.g. walker_walk")
    ap.add_argument("--episodes", type=int, default=1, help="real episodes (seeds --seed, --seed + 1, ...)")
    ap.add_argument("--seed", type=int, default=1000, help="seed of the first real episode")
    ap.add_argument("--window", type=int, default=16, help="open-loop steps (the learner imagines 16)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    args = ap.parse_args()
    folder = Path(args.policy)
    slug, policies_dir = (folder.name, folder.parent) if folder.is_dir() else (args.policy, None)
    agent = GenRL.load(args.bundle, device=args.device, policies_dir=policies_dir)
    rows = [gaps(agent, slug, args.task, args.seed + i, args.window) for i in range(args.episodes)]
    print(f"policy {args.policy}, task {args.task}, {args.episodes} episode(s) from seed {args.seed}")
    print("| measure | mean over episodes |\n|---|---|")
    for key in rows[0]:
        print(f"| {key} | {np.mean([r[key] for r in rows]):.1f} |")


if __name__ == "__main__":
    main()

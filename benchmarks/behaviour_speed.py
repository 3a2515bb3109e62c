"""Updates/s of one behaviour-learning step (imagine 16 steps + reward + actor + critic).

    python benchmarks/behaviour_speed.py --bundle checkpoints/walker --device cpu
    python benchmarks/behaviour_speed.py --bundle checkpoints/walker --device cuda   # on a GPU box

Rows: our `small` preset (the CPU default) and the paper's sizes (actor/critic 4 x 1024,
1024 imagined trajectories), both on the bundle's world model, measured in the same run;
the ratio column is against the paper-size step here. The original reports 50k updates in
under 5 hours on a V100, about 2.8 updates/s: printed as the aim, not measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from genrl_core.agent import GenRL
from genrl_core.config import preset
from genrl_core.train.behaviour import BehaviourLearner, StartStates

ORIGINAL_V100_UPDATES_PER_S = 50_000 / (5 * 3600)


def measure(agent: GenRL, cfg, updates: int) -> tuple[float, float]:
    target = agent.target("stand up straight", steps=cfg.horizon + 1)
    starts = StartStates(agent.wm, agent.bundle, cfg.start, agent.connector, agent.aligner, agent.vlm.embed_dim,
                         torch.Generator().manual_seed(0))
    learner = BehaviourLearner(agent.wm, cfg, agent.wm.cfg.action_dim)
    learner.update(*starts.sample(cfg.batch), target)  # warm-up (allocations, lazy init)
    if agent.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(updates):
        learner.update(*starts.sample(cfg.batch), target)
    if agent.device.type == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if agent.device.type == "cuda" else float("nan")
    return updates / (time.perf_counter() - t0), peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="checkpoints/walker", help="bundle with a world model and connector")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--updates", type=int, default=10, help="timed updates per row")
    args = ap.parse_args()
    agent = GenRL.load(args.bundle, device=args.device)
    rows = []
    for name in ("paper", "small"):
        cfg = dataclasses.replace(preset("behaviour", name)["behaviour"], updates=args.updates)
        ups, peak = measure(agent, cfg, args.updates if name == "small" else max(2, args.updates // 5))
        rows.append((name, cfg.batch, cfg.hidden, ups, peak))
    ref = rows[0][3]
    print(f"device {args.device}, threads {torch.get_num_threads()}, world model {agent.bundle}")
    print("| preset | trajectories | actor/critic width | updates/s | peak GPU GB | vs paper-size here | "
          "vs original V100 (2.8/s) |")
    print("|---|---|---|---|---|---|---|")
    for name, batch, hidden, ups, peak in rows:
        print(f"| {name} | {batch} | {hidden} | {ups:.2f} | {peak:.2f} | {ups / ref:.2f}x | "
              f"{ups / ORIGINAL_V100_UPDATES_PER_S:.2f}x |")


if __name__ == "__main__":
    main()

"""Collection speed: rendered frames/s per policy kind vs the bare dm_control render loop.

    .venv/bin/python benchmarks/collect_speed.py [--body walker] [--expert walker_stand]

The reference is dm_control's own walker env stepping random actions with action repeat 2
and rendering one 64x64 frame per agent step (default render settings), measured in the
same run, so the ratios do not depend on the machine.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from genrl_core.data.collect import Policy, run_episode  # sets MUJOCO_GL before dm_control loads


def bare_dm_control_fps(body: str, frames: int = 500) -> float:
    from dm_control import suite

    env = suite.load(body, {"walker": "walk", "cheetah": "run", "quadruped": "walk"}[body],
                     task_kwargs={"random": 0})
    spec = env.action_spec()
    rng = np.random.default_rng(0)
    env.reset()
    camera = {"quadruped": 2}.get(body, 0)
    t0 = time.perf_counter()
    for _ in range(frames):
        a = rng.uniform(spec.minimum, spec.maximum)
        for _ in range(2):
            env.step(a)
        env.physics.render(64, 64, camera_id=camera)
    return frames / (time.perf_counter() - t0)


def policy_fps(body: str, policy: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    ep = run_episode(body, Policy.parse(policy, body), seed=0)
    secs = time.perf_counter() - t0
    return len(ep["image"]) / secs, secs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--body", default="walker", help="walker | cheetah | quadruped")
    parser.add_argument("--expert", default="walker_stand", help="expert task to time ('' to skip)")
    args = parser.parse_args()
    ref = bare_dm_control_fps(args.body)
    print(f"reference: bare dm_control {args.body} render loop: {ref:.0f} frames/s")
    print(f"{'policy':28s} {'frames/s':>9s} {'ratio':>6s} {'s/episode':>9s}")
    policies = ["random", "reset"] + ([f"expert:{args.expert}"] if args.expert else [])
    for policy in policies:
        fps, secs = policy_fps(args.body, policy)
        print(f"{policy:28s} {fps:9.0f} {fps / ref:6.2f} {secs:9.1f}")


if __name__ == "__main__":
    main()

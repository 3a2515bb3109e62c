"""Learn many policies at once on a GPU box that has torch but no VLM, MuJoCo or project venv.

    python benchmarks/score_ladder.py --export-jobs jobs.pt ...           # here: targets + metas
    python scripts/gpu_learn.py --bundle DIR --jobs jobs.pt --out OUT     # there: one process per job
    tar xzf OUT/policies.tar.gz -C runs/ladder/policies                   # here: then rerun the ladder

DIR needs only config.json, world_model.pt, start_states.pt (and reward_heads.pt for oracle
jobs). Jobs run in parallel processes (--parallel), each with its own CUDA context: the
behaviour update is launch-bound, so several share one GPU well. Each job's folder
(policy.pt, meta.json, target.pt, log.jsonl) is exactly what `GenRL.learn` writes, and all of
them come back as one policies.tar.gz.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tarfile
import time
from pathlib import Path

import torch


def learn_one(bundle: str, job: dict, out: str, device: str) -> str:
    from genrl_core.bundle import Bundle
    from genrl_core.models.reward import make_reward
    from genrl_core.policies import PolicyMeta
    from genrl_core.train.behaviour import LearnRun, StartStates, learn_policy

    torch.set_num_threads(1)
    wm = Bundle(bundle).load_world_model(device).requires_grad_(False)
    meta = PolicyMeta.from_dict(job["meta"])
    cfg = meta.config
    reward = make_reward(cfg.reward, wm, Bundle(bundle), cfg.align_states)
    starts = StartStates(wm, Path(bundle), cfg.start, generator=torch.Generator().manual_seed(cfg.seed))
    t0 = time.time()
    meta = learn_policy(wm, LearnRun(job["target"].to(device), starts, cfg, Path(out) / job["slug"], meta, reward))
    return f"{job['slug']}: {meta.updates_done} updates in {time.time() - t0:.0f}s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True, help="folder with config.json, world_model.pt, start_states.pt")
    parser.add_argument("--jobs", required=True, help="file from score_ladder.py --export-jobs")
    parser.add_argument("--out", required=True, help="folder for the policies and policies.tar.gz")
    parser.add_argument("--device", default="cuda", help="cuda | cpu")
    parser.add_argument("--parallel", type=int, default=8, help="jobs learning at once")
    args = parser.parse_args()
    jobs = torch.load(args.jobs, weights_only=False)
    policies = Path(args.out) / "policies"
    policies.mkdir(parents=True, exist_ok=True)
    with mp.get_context("spawn").Pool(args.parallel) as pool:
        waits = [pool.apply_async(learn_one, (args.bundle, job, str(policies), args.device)) for job in jobs]
        for job, wait in zip(jobs, waits, strict=True):
            try:
                print("[gpu-learn]", wait.get(), flush=True)
            except Exception as exc:  # one bad job must not lose the others
                print(f"[gpu-learn] {job['slug']} failed: {exc!r}", flush=True)
    with tarfile.open(Path(args.out) / "policies.tar.gz", "w:gz") as tar:
        for d in sorted(policies.iterdir()):
            for name in ("policy.pt", "meta.json", "target.pt", "log.jsonl"):
                if (d / name).exists():
                    tar.add(d / name, arcname=f"{d.name}/{name}")
    print(json.dumps({"policies": len(list(policies.iterdir()))}))


if __name__ == "__main__":
    main()

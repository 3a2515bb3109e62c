"""Do decoded targets mean what the prompt says? And how fast is a target on this machine?

    .venv/bin/python benchmarks/target_quality.py --bundle checkpoints/walker --data data/walker

1. Accuracy: each prompt's decoded 32-step target video is embedded with the bundle's VLM
   (mean of its window embeddings) and compared with every prompt's text embedding; a hit
   is when its own prompt is the nearest. Run with the aligner on, off, and as a floor
   with the prompt embeddings shuffled before the connector (each target made from another
   prompt), all in one run.
2. Connector held-out KL: KL(connector || posterior) with teacher forcing on held-out
   episodes, next to the world model's own prior KL(prior || posterior) on the same steps.
3. Latency: prompt -> decoded 32-step target video, next to one VLM text embedding.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genrl_core.agent import GenRL
from genrl_core.bundle import read_config
from genrl_core.data.replay import EpisodeReplay
from genrl_core.models.nets import categorical_kl
from genrl_core.train.connector import chunk
from genrl_core.vlm import load_window_embeddings

PROMPTS = {
    "standing": "stand up straight",
    "running": "run fast",
    "walking": "walk forward slowly",
    "lying_back": "lie down on your back",
    "kneeling": "kneel on the ground",
    "flipping": "do a backflip",
    "legs_up": "lie on your back and kick your legs in the air",
    "crouching": "crouch down low",
}


@torch.no_grad()
def accuracy(agent: GenRL, prompts: list[str], use_aligner: bool, shuffle: bool, steps: int = 32) -> float:
    embs = torch.stack([agent.embed_prompt(p, use_aligner) for p in prompts])
    if shuffle:
        embs = embs[torch.roll(torch.arange(len(prompts)), 1)]
    videos = []
    for emb in embs:
        frames = agent.decode(agent.connector.rollout(emb[None], steps)[0])
        videos.append(F.normalize(agent.vlm.embed_windows(frames)[7:].mean(0), dim=-1))
    sims = torch.stack(videos) @ agent.vlm.embed_text(prompts).T
    return float((sims.argmax(1) == torch.arange(len(prompts))).float().mean())


@torch.no_grad()
def heldout_kl(agent: GenRL, data: str, batches: int = 8) -> tuple[float, float]:
    held = read_config(agent.bundle).get("connector", {}).get("heldout", [])
    paths = [Path(data) / name for name in held]
    if not paths:
        return float("nan"), float("nan")
    replay = EpisodeReplay(paths, 48, seed=0, log=lambda *_: None,
                           extras={"embedding": lambda p: load_window_embeddings(data, agent.vlm, p.stem).numpy()})
    conn, prior = [], []
    for _ in range(batches):
        batch = replay.sample(16)
        obs = agent.wm.observe(batch["image"], batch["action"], batch["is_first"])
        emb = batch["embedding"][:, 7::8].flatten(0, 1).float()
        probs = agent.connector.teacher_forced(emb, chunk(obs["stoch"]))
        conn.append(categorical_kl(probs, chunk(obs["post"])).mean())
        prior.append(categorical_kl(obs["prior"][:, 1:], obs["post"][:, 1:]).mean())
    return float(torch.stack(conn).mean()), float(torch.stack(prior).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="checkpoints/walker")
    parser.add_argument("--data", default=None, help="dataset folder (for the held-out KL; optional)")
    args = parser.parse_args()
    agent = GenRL.load(args.bundle)
    prompts = list(PROMPTS.values())
    print(f"{len(prompts)} prompts; chance accuracy {1 / len(prompts):.2f}")
    print(f"{'setting':28s} {'accuracy':>8s}")
    for name, aligner, shuffle in (("aligner on", True, False), ("aligner off", False, False),
                                   ("floor: shuffled embeddings", True, True)):
        print(f"{name:28s} {accuracy(agent, prompts, aligner, shuffle):8.2f}")
    if args.data:
        conn, prior = heldout_kl(agent, args.data)
        print(f"held-out KL: connector {conn:.2f} nats vs world-model prior {prior:.2f} nats")
    agent.decode(agent.target("warm up", 32))
    t0 = time.perf_counter()
    for p in prompts:  # each prompt once: none of them is in the agent's target cache yet
        agent.decode(agent.target(p, 32))
    target_ms = (time.perf_counter() - t0) / len(prompts) * 1000
    t0 = time.perf_counter()
    for p in prompts:
        agent.vlm.embed_text([p])
    text_ms = (time.perf_counter() - t0) / len(prompts) * 1000
    print(f"latency: prompt -> decoded 32-step target {target_ms:.0f} ms; one VLM text embedding {text_ms:.0f} ms "
          f"(ratio {target_ms / text_ms:.1f})")


if __name__ == "__main__":
    main()

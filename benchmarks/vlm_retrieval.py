"""Text-to-window retrieval of the embedded VLM on held-out episodes, vs a random-init floor.

    .venv/bin/python benchmarks/vlm_retrieval.py --bundle checkpoints/walker --data data/walker

Each held-out window gets its concept labels from the simulator state (as in training).
For every concept present, a prompt is scored: R@1 = the best-matching window shows the
concept; R@5 = one of the five best does; P@5 = share of the five that do. Prompts come
in two lists: caption-template wordings (seen in training) and paraphrases that never
appear in the templates. The same VLM architecture with random weights is the floor,
measured in the same run.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from genrl_core.bundle import read_config
from genrl_core.config import EmbeddedVLMConfig
from genrl_core.data.store import EpisodeStore, load_episode
from genrl_core.train.vlm import episode_features
from genrl_core.vlm import load_vlm, window_indices
from genrl_core.vlm.base import WINDOW
from genrl_core.vlm.captions import WORDINGS, window_concepts
from genrl_core.vlm.embedded import EmbeddedVLM, VideoCLIP

# wordings a user might type that are not in vlm.captions.WORDINGS
PARAPHRASES = {
    "standing": "stay on your feet with the body vertical",
    "crouching": "bend the legs and stay low",
    "kneeling": "rest on both knees",
    "lying_back": "lie flat with the belly facing the sky",
    "lying_front": "lie with the chest on the floor",
    "upside_down": "balance with the head below the feet",
    "fallen": "collapsed in a pile on the floor",
    "still": "freeze and do not move at all",
    "walking": "stroll ahead at a gentle pace",
    "running": "dash ahead at top speed",
    "backward": "go in reverse",
    "flipping": "turn somersaults",
    "one_foot": "hop on a single leg",
    "high_kick": "swing a leg up as high as you can",
    "legs_up": "on the back, raise both feet toward the ceiling",
    "falling": "tip over and go down",
    "getting_up": "push yourself up off the floor",
}


def held_out_windows(bundle: str, data: str, stride: int) -> tuple[torch.Tensor, list[set[str]], str]:
    names = read_config(bundle).get("vlm", {}).get("heldout", [])
    store = EpisodeStore(data)
    paths = [store.root / n for n in names if (store.root / n).exists()] or store.paths()[-3:]
    windows, labels, body = [], [], "walker"
    for path in paths:
        ep = load_episode(path)
        body = ep["body"]
        feats = episode_features(body, ep["state"])
        idx = window_indices(len(ep["image"]))
        for t in range(WINDOW - 1, len(ep["image"]), stride):
            windows.append(ep["image"][idx[t]])
            labels.append(set(window_concepts({k: v[t - WINDOW + 1: t + 1] for k, v in feats.items()}, body)))
    return torch.from_numpy(np.stack(windows)), labels, body


def retrieval(vlm, windows: torch.Tensor, labels: list[set[str]], prompts: dict[str, str]) -> dict[str, float]:
    video = vlm.embed_video(windows)
    concepts = list(prompts)
    sims = vlm.embed_text([prompts[c] for c in concepts]) @ video.T
    top = sims.topk(5, dim=1).indices
    hits = torch.tensor([[c in labels[i] for i in row] for c, row in zip(concepts, top.tolist(), strict=True)])
    return {"R@1": hits[:, 0].float().mean().item(), "R@5": hits.any(1).float().mean().item(),
            "P@5": hits.float().mean().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="checkpoints/walker")
    parser.add_argument("--data", required=True, help="dataset folder holding the bundle's held-out episodes")
    parser.add_argument("--stride", type=int, default=4, help="use every n-th window")
    args = parser.parse_args()
    windows, labels, body = held_out_windows(args.bundle, args.data, args.stride)
    present = sorted({c for s in labels for c in s})
    print(f"{len(windows)} held-out windows; concepts present: "
          + ", ".join(f"{c} ({sum(c in s for s in labels)})" for c in present))
    name = {"walker": "a walker"}.get(body, "the robot")
    templates = {c: WORDINGS[c][0].replace("{b}", name) for c in present}
    paraphrases = {c: PARAPHRASES[c] for c in present}
    trained = load_vlm(args.bundle)
    torch.manual_seed(0)
    floor = EmbeddedVLM(VideoCLIP(EmbeddedVLMConfig(**read_config(args.bundle)["vlm"]["config"])), name="random")
    print(f"{'prompts':12s} {'model':8s} {'R@1':>6s} {'R@5':>6s} {'P@5':>6s}")
    for kind, prompts in (("templates", templates), ("paraphrases", paraphrases)):
        for label, vlm in (("trained", trained), ("random", floor)):
            r = retrieval(vlm, windows, labels, prompts)
            print(f"{kind:12s} {label:8s} {r['R@1']:6.2f} {r['R@5']:6.2f} {r['P@5']:6.2f}")


if __name__ == "__main__":
    main()

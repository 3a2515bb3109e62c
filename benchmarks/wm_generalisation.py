"""Does a world model predict unseen motion, or only fit its data? Open loop on held-out vs training.

    python benchmarks/wm_generalisation.py --data data/walker \
        --bundles runs/wm_0020000 runs/wm_0040000 checkpoints/walker

For each world model: `genrl eval-wm`'s open-loop PSNR (5 true frames, then 45 predicted from
the true actions, windows at steps 0, 100, ..., 400) on the held-out episodes named in the
first bundle's config, and on as many training episodes of the same kinds (the first unused
training episode whose name has the same prefix, e.g. `random-`). A training score that keeps
rising while the held-out one stays flat means more updates fit the data without generalising:
the model is limited by its data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from genrl_core.bundle import Bundle, read_config
from genrl_core.data.replay import split_episodes
from genrl_core.data.store import EpisodeStore
from genrl_core.wm_eval import open_loop_scores


def kind(path: Path) -> str:
    return path.name.rsplit("-", 1)[0]


def matched_training_episodes(held: list[Path], train: list[Path]) -> list[Path]:
    """One training episode of the same kind per held-out episode, each used once."""
    unused, matched = list(train), []
    for path in held:
        same = next((p for p in unused if kind(p) == kind(path)), None)
        if same is not None:
            matched.append(same)
            unused.remove(same)
    return matched


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/walker", help="the dataset the world models were trained on")
    ap.add_argument("--bundles", nargs="+", required=True, help="folders with config.json and world_model.pt")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    paths = EpisodeStore(args.data).paths()
    if not paths:
        ap.error(f"no episodes in {args.data}")
    train, _ = split_episodes(paths)
    names = set(read_config(args.bundles[0]).get("world_model_heldout", []))
    held = [p for p in paths if p.name in names]
    if not held:
        ap.error(f"{args.bundles[0]}/config.json names no held-out episodes of {args.data}")
    seen = matched_training_episodes(held, train)
    print(f"held-out: {', '.join(p.name for p in held)}\ntraining: {', '.join(p.name for p in seen)}\n")
    print("| world model | held-out context | held-out open loop | training context | training open loop |")
    print("|---|---|---|---|---|")
    for bundle in args.bundles:
        model = Bundle(bundle).load_world_model()
        cells = []
        for split in (held, seen):
            scores = open_loop_scores(model, split)[0]
            cells += [f"{scores['psnr_context_mean']:.1f} dB", f"{scores['psnr_open_loop_mean']:.1f} dB"]
        print(f"| {bundle} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()

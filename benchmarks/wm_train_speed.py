"""World-model update speed per preset: optimised path vs a plain PyTorch reference step.

    .venv/bin/python benchmarks/wm_train_speed.py [--presets tiny,small] [--device cpu|cuda] [--updates 10]

Each (preset, variant) runs in its own process on random uint8 batches of the preset's
batch x seq_len, so peak memory is that of one configuration. Variants:
  reference  a plain PyTorch Dreamer step: fp32, and encoder, posterior, prior and decoder
             called once per time step inside the recurrence loop
  batched    our RSSM: posteriors, priors and decoding of all steps as single batched ops
  +cl        batched with channels_last convs
  optimised  what `genrl train-wm` uses on the device: batched, channels_last, autocast
             (bf16 where supported), and with --compile torch.compile (CUDA graphs on GPU)
Printed: updates/s, frames/s (batch x seq_len per update), peak memory, speed-up ratio.
Aim on a GPU (paper preset): >= 12 updates/s, 10x the original's ~1.2 updates/s on a V100.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from genrl_core.config import preset as get_preset
from genrl_core.models.nets import categorical_kl, sample_onehot
from genrl_core.models.rssm import RSSM
from genrl_core.train.loop import PAPER_DETER, resolve_amp

VARIANTS = ("reference", "batched", "+cl", "optimised")


def per_step_loss(model: RSSM, images: torch.Tensor, actions: torch.Tensor, is_first: torch.Tensor):
    """The same ELBO as RSSM.loss, computed the naive way: every network called per time step."""
    cfg = model.cfg
    deter = model.initial_deter(images.shape[0], images.device)
    prev = torch.zeros(images.shape[0], cfg.stoch, cfg.classes, device=images.device)
    image_loss = kl_loss = 0.0
    for t in range(images.shape[1]):
        keep = (~is_first[:, t]).float()[:, None]
        deter = model.step(deter * keep, prev * keep[..., None], actions[:, t] * keep)
        post = model.posterior_probs(images[:, t])
        prior = model.prior_probs(deter)
        prev = sample_onehot(post)
        image_loss = image_loss + (model.decode(prev) - model.preprocess(images[:, t])).pow(2).sum((-3, -2, -1)).mean()
        dyn = categorical_kl(post.detach(), prior).clamp(min=cfg.free_nats).mean()
        rep = categorical_kl(post, prior.detach()).clamp(min=cfg.free_nats).mean()
        kl_loss = kl_loss + cfg.kl_balance * dyn + (1 - cfg.kl_balance) * rep
    steps = images.shape[1]
    return image_loss / steps + cfg.kl_scale * kl_loss / steps, {}


def measure(preset: str, variant: str, device: str, updates: int, compile_: bool) -> dict:
    sections = get_preset("world_model", preset)
    model_cfg, train_cfg = sections["model"], sections["train"]
    dev = torch.device(device)
    model = RSSM(model_cfg).to(dev)
    optimised = variant == "optimised"
    if variant in ("+cl", "optimised"):
        model = model.to(memory_format=torch.channels_last)
    amp = resolve_amp("auto", dev, large=model_cfg.deter >= PAPER_DETER) if optimised else None
    if variant == "reference":
        step_fn = lambda *batch: per_step_loss(model, *batch)  # noqa: E731
    elif optimised and compile_:
        step_fn = torch.compile(model, mode="reduce-overhead" if dev.type == "cuda" else "default")
    else:
        step_fn = model
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    b, t = train_cfg.batch, train_cfg.seq_len
    images = torch.randint(0, 256, (b, t, 64, 64, 3), dtype=torch.uint8, device=dev)
    actions = torch.rand(b, t, model_cfg.action_dim, device=dev) * 2 - 1
    first = torch.zeros(b, t, dtype=torch.bool, device=dev)
    first[:, 0] = True

    def update():
        with torch.autocast(dev.type, dtype=amp) if amp else torch.autocast(dev.type, enabled=False):
            loss, _ = step_fn(images, actions, first)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)
        opt.step()

    warm = 3 if compile_ and optimised else 1
    for _ in range(warm):
        update()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(updates):
        update()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    secs = (time.perf_counter() - t0) / updates
    peak = (torch.cuda.max_memory_allocated() if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"preset": preset, "variant": variant, "updates_per_s": 1 / secs, "frames_per_s": b * t / secs,
            "peak_gb": peak / 1e9, "amp": str(amp), "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "batch": f"{b}x{t}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,small", help="comma-separated presets (paper is slow on CPU)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--updates", type=int, default=10, help="timed updates per configuration")
    parser.add_argument("--compile", action="store_true", help="torch.compile the optimised step")
    parser.add_argument("--single", nargs=2, metavar=("PRESET", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        print(json.dumps(measure(*args.single, args.device, args.updates, args.compile)))
        return
    print(f"device {args.device}; torch {torch.__version__}; threads {torch.get_num_threads()}")
    print(f"{'preset':7s} {'params':>7s} {'batch':>6s} {'variant':10s} {'amp':15s} {'upd/s':>7s} "
          f"{'frames/s':>9s} {'peak GB':>8s} {'ratio':>6s}")
    for preset in args.presets.split(","):
        ref = None
        for variant in VARIANTS:
            cmd = [sys.executable, __file__, "--single", preset, variant, "--device", args.device,
                   "--updates", str(args.updates)] + (["--compile"] if args.compile else [])
            row = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            ref = ref or row["updates_per_s"]
            print(f"{preset:7s} {row['params_m']:6.1f}M {row['batch']:>6s} {variant:10s} {row['amp']:15s} "
                  f"{row['updates_per_s']:7.3f} {row['frames_per_s']:9.0f} {row['peak_gb']:8.2f} "
                  f"{row['updates_per_s'] / ref:6.2f}", flush=True)


if __name__ == "__main__":
    main()

"""Connector + aligner training (world model and VLM frozen), resumable.

    genrl embed-dataset --data data/walker --bundle checkpoints/walker
    genrl train-connector --data data/walker --bundle checkpoints/walker

Sequences of `seq_len` (48) steps are filtered by the frozen world model; their posterior
states are cut into chunks of 8, each conditioned on the VLM embedding of its own window
(stored at the chunk's last step), and the connector learns KL(connector || sg(posterior))
with teacher forcing. The aligner learns, from the same video embeddings and no language,
to undo the noise corruption of docs/GENRL.md section 5. Neither sees captions or rewards.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from genrl_core.bundle import BundleError, load_torch, read_config, relative_to_bundle, save_torch, write_config
from genrl_core.config import ConnectorTrainConfig, apply_overrides
from genrl_core.config import preset as get_preset
from genrl_core.data.replay import EpisodeReplay
from genrl_core.errors import MissingFileError
from genrl_core.models.aligner import Aligner
from genrl_core.models.connector import Connector
from genrl_core.train.loop import (
    PAPER_DETER,
    ProgressLog,
    allow_tf32,
    autocast,
    compile_for,
    resolve_amp,
    should_compile,
)
from genrl_core.train.world_model import load_world_model
from genrl_core.vlm import WINDOW, embeddings_dir, load_vlm, load_window_embeddings

STATE_FILE = Path("train_state") / "connector.pt"
LOG_FILE = Path("logs") / "connector.jsonl"


def chunk(x: torch.Tensor) -> torch.Tensor:
    """(B, T, ...) -> (B * T/8, 8, ...): consecutive 8-step chunks."""
    return x.reshape(x.shape[0] * (x.shape[1] // WINDOW), WINDOW, *x.shape[2:])


def connector_batch_loss(wm, connector: Connector, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Teacher-forced connector KL of one replay batch (the world model only filters, no grad)."""
    with torch.no_grad():
        obs = wm.observe(batch["image"], batch["action"], batch["is_first"])
    emb = batch["embedding"][:, WINDOW - 1:: WINDOW].flatten(0, 1).float()  # each chunk's own window
    return connector.loss(emb, chunk(obs["post"]), chunk(obs["stoch"]))


def train_connector(data: str | Path, bundle: str | Path, preset: str = "small", overrides: list[str] | None = None,
                    device: str = "cpu", progress: bool = True, log=print, warm_start: bool = False) -> dict[str, Any]:
    """Train (or resume) the connector and aligner of `bundle`; `overrides`: `train.KEY=VALUE`.
    `warm_start`: with no training state to resume, start from the bundle's connector and aligner
    weights (counting on from their recorded step) rather than afresh, e.g. to refit them to a world
    model that practice went on training."""
    bundle, dev = Path(bundle), torch.device(device)
    cfg: ConnectorTrainConfig = apply_overrides(get_preset("connector", preset), overrides or [])["train"]
    wm = load_world_model(bundle, device)
    for p in wm.parameters():
        p.requires_grad_(False)
    vlm = load_vlm(bundle, device=device)
    cache = embeddings_dir(data, vlm)
    if not cache.is_dir():
        raise MissingFileError(f"no cached window embeddings for this VLM in {cache}; run "
                                f"`genrl embed-dataset --data {data} --bundle {bundle}` first")

    embeddings = {"embedding": lambda p: load_window_embeddings(data, vlm, p.stem).numpy()}
    replay, held = EpisodeReplay.from_dir(data, cfg.seq_len, dev, seed=cfg.seed, extras=embeddings)
    torch.manual_seed(cfg.seed)
    connector = Connector(wm.cfg, vlm.embed_dim).to(dev)
    aligner = Aligner(vlm.embed_dim).to(dev)
    params = list(connector.parameters()) + list(aligner.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr, fused=dev.type == "cuda")
    config = read_config(bundle)
    step, elapsed_before = 0, 0.0
    if (bundle / STATE_FILE).exists():
        state = load_torch(bundle / STATE_FILE)
        if state.get("vlm") != vlm.name:
            raise BundleError(f"{bundle}: the connector was trained on VLM {state.get('vlm')}, the bundle now has "
                              f"{vlm.name}; delete {bundle / STATE_FILE} to start the connector over")
        connector.load_state_dict(state["connector"])
        aligner.load_state_dict(state["aligner"])
        opt.load_state_dict(state["optimizer"])
        step, elapsed_before = int(state["step"]), float(state["elapsed"])
        replay.set_state(state["replay_rng"])
        torch.set_rng_state(state["torch_rng"])
        log(f"[train-connector] resumed {bundle} at step {step}")
    elif warm_start and (bundle / "connector.pt").exists() and (bundle / "aligner.pt").exists():
        trained_on = config.get("connector", {}).get("vlm")
        if trained_on != vlm.name:
            raise BundleError(f"{bundle}: its connector was trained on VLM {trained_on}, the bundle now has "
                              f"{vlm.name}; train one afresh without --warm-start")
        try:
            connector.load_state_dict(load_torch(bundle / "connector.pt"))
            aligner.load_state_dict(load_torch(bundle / "aligner.pt"))
        except RuntimeError as e:  # another world-model size or VLM width
            raise BundleError(f"{bundle}: its connector does not fit its world model and VLM ({e}); "
                              f"train one afresh without --warm-start") from None
        step = int(config.get("connector", {}).get("train", {}).get("step", 0))
        log(f"[train-connector] {bundle}: starting from its connector and aligner at step {step}")

    def checkpoint(elapsed: float) -> None:
        save_torch(bundle / STATE_FILE, {
            "connector": connector.state_dict(), "aligner": aligner.state_dict(), "optimizer": opt.state_dict(),
            "step": step, "elapsed": elapsed, "vlm": vlm.name, "replay_rng": replay.get_state(),
            "torch_rng": torch.get_rng_state()})
        save_torch(bundle / "connector.pt", connector.state_dict())
        save_torch(bundle / "aligner.pt", aligner.state_dict())
        write_config(bundle, {**read_config(bundle), "connector": {
            "embed_dim": vlm.embed_dim, "vlm": vlm.name, "data": relative_to_bundle(data, bundle),
            "heldout": [p.name for p in held],
            "train": {**dataclasses.asdict(cfg), "step": step, "train_seconds": round(elapsed, 1),
                      "device": str(dev), "amp": str(amp), "compiled": compiled}}})

    amp = resolve_amp(cfg.amp, dev, large=wm.cfg.deter >= PAPER_DETER)
    allow_tf32(dev)

    def losses(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(dev, amp):
            conn_loss = connector_batch_loss(wm, connector, batch)
            align_loss = aligner.loss(batch["embedding"].flatten(0, 1).float())
        return conn_loss.float(), align_loss.float()

    compiled = should_compile(cfg.compile, dev, cfg.steps - step)
    if compiled:
        losses = compile_for(losses, dev)
    log(f"[train-connector] {replay.num_episodes} episodes, VLM {vlm.name}, "
        f"world model {config.get('world_model_preset')} at step {config.get('world_model_train', {}).get('step')}; "
        f"device {dev}, amp {amp}, compile {compiled}")
    plog = ProgressLog(bundle / LOG_FILE, cfg.steps, step, cfg.log_every, cfg.checkpoint_minutes,
                       "train-connector", progress, elapsed_before)
    with plog.saving_on_interrupt(lambda: checkpoint(plog.elapsed), log):
        while step < cfg.steps:
            batch = replay.sample(cfg.batch)
            conn_loss, align_loss = losses(batch)
            loss = cfg.connector_weight * conn_loss + align_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            step += 1
            plog.update(step, {"connector_kl": conn_loss.detach(), "aligner_loss": align_loss.detach()})
            if plog.checkpoint_due():
                checkpoint(plog.elapsed)
    checkpoint(plog.elapsed)
    log(f"[train-connector] done: step {step} -> {bundle}")
    return {"step": step, "connector": connector, "aligner": aligner}

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

from genrl_core.bundle import Bundle, BundleError, relative_to_bundle
from genrl_core.config import ConnectorTrainConfig, apply_overrides
from genrl_core.config import preset as get_preset
from genrl_core.data.replay import EpisodeReplay
from genrl_core.errors import MissingFileError
from genrl_core.models.aligner import Aligner
from genrl_core.models.connector import Connector
from genrl_core.train.loop import PAPER_DETER, DeviceChoice, ProgressLog, TrainState, torch_rng
from genrl_core.vlm import WINDOW, embeddings_dir, load_vlm, load_window_embeddings

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
    files = Bundle(bundle)
    cfg: ConnectorTrainConfig = apply_overrides(get_preset("connector", preset), overrides or [])["train"]
    wm = files.load_world_model(device)
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
    config = files.config()
    step = 0
    run = TrainState(files.train_state_file("connector"), {"replay_rng": (replay.get_state, replay.set_state),
                                                           "torch_rng": torch_rng()})
    if (state := run.load()) is not None:
        if state.get("vlm") != vlm.name:
            raise BundleError(f"{bundle}: the connector was trained on VLM {state.get('vlm')}, the bundle now has "
                              f"{vlm.name}; delete {run.path} to start the connector over")
        connector.load_state_dict(state["connector"])
        aligner.load_state_dict(state["aligner"])
        opt.load_state_dict(state["optimizer"])
        step = run.step
        log(f"[train-connector] resumed {bundle} at step {step}")
    elif warm_start and files.connector_file.exists() and files.aligner_file.exists():
        trained_on = config.get("connector", {}).get("vlm")
        if trained_on != vlm.name:
            raise BundleError(f"{bundle}: its connector was trained on VLM {trained_on}, the bundle now has "
                              f"{vlm.name}; train one afresh without --warm-start")
        try:
            files.load_connector(connector, aligner)
        except BundleError as e:  # another world-model size or VLM width
            raise BundleError(f"{bundle}: its connector does not fit its world model and VLM ({e}); "
                              f"train one afresh without --warm-start") from None
        step = int(config.get("connector", {}).get("train", {}).get("step", 0))
        log(f"[train-connector] {bundle}: starting from its connector and aligner at step {step}")

    def checkpoint(elapsed: float) -> None:
        run.save(step, elapsed, connector=connector.state_dict(), aligner=aligner.state_dict(),
                 optimizer=opt.state_dict(), vlm=vlm.name)
        files.save_connector(connector, aligner)
        files.update_config({"connector": {
            "embed_dim": vlm.embed_dim, "vlm": vlm.name, "data": relative_to_bundle(data, bundle),
            "heldout": [p.name for p in held],
            "train": {**dataclasses.asdict(cfg), "step": step, "train_seconds": round(elapsed, 1),
                      "device": str(dev), **choice.record()}}})

    choice = DeviceChoice.choose(dev, cfg.amp, cfg.compile, wm.cfg.deter >= PAPER_DETER, cfg.steps - step)

    def losses(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        with choice.autocast():
            conn_loss = connector_batch_loss(wm, connector, batch)
            align_loss = aligner.loss(batch["embedding"].flatten(0, 1).float())
        return conn_loss.float(), align_loss.float()

    losses = choice.compile(losses)
    log(f"[train-connector] {replay.num_episodes} episodes, VLM {vlm.name}, "
        f"world model {config.get('world_model_preset')} at step {config.get('world_model_train', {}).get('step')}; "
        f"{choice}")
    plog = ProgressLog(bundle / LOG_FILE, cfg.steps, step, cfg.log_every, cfg.checkpoint_minutes,
                       "train-connector", progress, run.elapsed)
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

"""Dyna rounds: the bundle's own policies act in the simulator, the world model learns from
what they saw, and the policies are learned again on it.

    genrl dyna --bundle checkpoints/walker --data data/walker --out runs/dyna \\
        --prompt "walk forward@walker_walk" --prompt oracle:walker_run --rounds 3

Why: a policy learned in imagination finds states where the world model is wrong (half-fallen,
lunging) and exploits them; the dataset rarely shows such states, so more world-model updates on
it do not help (docs/LADDER.md). Data from the policies' own episodes does: one round on
the walker bundle removed the overestimate of the policies that collected.

Round r (0 .. rounds-1): learn a policy per prompt on the current bundle -> score each in the
simulator -> each collects `episodes` episodes (sampled actions) -> the world model trains
`wm_updates` more steps on dataset + all collected episodes -> start states, oracle reward heads
(and, if asked, the connector) are rebuilt for the new world model. A last learn + score on the
final bundle closes the run, so the table has one row per world model: before Dyna, after round 1, ...

--out holds `bundle/` (a copy of --bundle that the rounds update; serve or learn on it),
`data/` (links to --data's files plus the new episodes), `round_NN/policies/` and `dyna.json`
(the plan and, per round, what finished and the scores). Every stage is recorded when it finishes
and every training step checkpoints, so rerunning the same command resumes; a larger --rounds
continues a finished run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genrl_core.errors import ConfigError
from genrl_core.fileio import atomic_write

STATE_FILE = "dyna.json"
STAGES = ("learn", "collect", "world_model", "refresh")
EVAL_SEED = 1000  # the score ladder's real-episode seeds, so the numbers compare


@dataclasses.dataclass(frozen=True)
class Driver:
    """One prompt the rounds learn, score and collect with: `TEXT`, `TEXT@TASK` (scored on TASK)
    or `oracle:TASK` (the reward head of TASK, scored on TASK)."""

    prompt: str
    task: str | None
    settings: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, spec: str) -> Driver:
        from genrl_core.envs import get_task

        spec = spec.strip()
        if spec.startswith("oracle:"):
            task = spec.split(":", 1)[1]
            prompt, settings = f"oracle {task}", (("reward", spec),)
        else:
            prompt, _, task = spec.rpartition("@") if "@" in spec else (spec, "", "")
            prompt, settings = prompt.strip(), ()
        task = task.strip() or None
        if not prompt:
            raise ConfigError(f"--prompt {spec!r} has no prompt before the @")
        if task is not None:
            try:
                get_task(task)
            except ConfigError as exc:
                raise ConfigError(f"--prompt {spec!r}: {exc}") from None
        return cls(prompt, task, settings)

    @property
    def oracle(self) -> bool:
        return bool(self.settings)  # only an oracle:TASK prompt carries a setting (its reward)

    @property
    def name(self) -> str:
        if self.oracle:
            return dict(self.settings)["reward"]  # oracle:TASK
        return f"{self.prompt}@{self.task}" if self.task else self.prompt


@dataclasses.dataclass(frozen=True)
class DynaPlan:
    drivers: tuple[Driver, ...]
    rounds: int = 3  # collect -> fine-tune cycles, then one more learn + score; more continues a finished run
    episodes: int = 8  # episodes each policy collects per round
    wm_updates: int = 4000  # world-model steps per round (long on a CPU, quick compiled on a GPU)
    wm_minutes: float = 0.0  # and at most this many minutes of them; 0 = no limit
    connector_updates: int = 0  # connector steps per round; 0 keeps it (retraining it did not lift the scores)
    eval_episodes: int = 3  # real episodes that score each policy naming a task (mean action, seeds 1000, 1001, ...)
    settings: tuple[tuple[str, str], ...] = ()  # behaviour settings for every policy (KEY, VALUE)

    def __post_init__(self):
        if not self.drivers:
            raise ConfigError("give at least one --prompt to learn, score and collect with")
        for name in ("rounds", "episodes", "wm_updates", "connector_updates", "eval_episodes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.wm_minutes < 0:
            raise ConfigError(f"--wm-minutes must be >= 0, got {self.wm_minutes}")

    def recorded(self) -> dict[str, Any]:
        """What must stay the same for a rerun to resume (--rounds may grow)."""
        return {"drivers": [d.name for d in self.drivers], "episodes": self.episodes,
                "wm_updates": self.wm_updates, "connector_updates": self.connector_updates,
                "settings": dict(self.settings)}


def mirror_dataset(src: Path, dst: Path) -> None:
    """Link every file of `src` into `dst` (sub-folders mirrored as real folders, so new episodes and
    their cached embeddings land in `dst` only, never in the shared dataset)."""
    for root, _, files in os.walk(src, followlinks=True):
        target = dst / Path(root).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            link = target / name
            if not link.exists() and not link.is_symlink() and not name.startswith("."):
                link.symlink_to(Path(root, name).resolve())


def prepare(out: Path, bundle: Path, data: Path) -> None:
    from genrl_core.bundle import WORLD_MODEL_FILE, Bundle
    from genrl_core.data.store import EpisodeStore

    if not Bundle(bundle).world_model_file.exists():
        raise ConfigError(f"--bundle {bundle} has no {WORLD_MODEL_FILE}")
    if not EpisodeStore(data).paths():
        raise ConfigError(f"--data {data} holds no episodes")
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "bundle").exists():
        tmp = out / "bundle.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        # the generalist fits this world model only: the new bundle trains its own (--warm-from the old one)
        shutil.copytree(bundle, tmp, ignore=shutil.ignore_patterns("logs", "generalist"))
        tmp.rename(out / "bundle")
    mirror_dataset(data, out / "data")


def read_run_state(path: Path, want: dict[str, Any], empty: dict[str, Any], kind: str) -> dict[str, Any]:
    """A resumable run's JSON state at `path` (`empty` with `want` as its plan when new); a rerun must
    ask for the recorded plan `want`, or it is refused with what differs."""
    if not path.exists():
        return {"plan": want, **empty}
    state = json.loads(path.read_text())
    diff = {k: (v, want[k]) for k, v in state["plan"].items() if want.get(k, v) != v}
    if diff:
        raise ConfigError(f"{path.parent} is a {kind} run with other settings: " +
                          "; ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in diff.items()) +
                          ": rerun with the recorded ones to resume, or use another --out")
    return state


def write_run_state(path: Path, state: dict[str, Any]) -> None:
    text = json.dumps(state, indent=1).encode()
    atomic_write(path, lambda f: f.write(text))


def read_state(out: Path, plan: DynaPlan, bundle: Path, data: Path) -> dict[str, Any]:
    """The run's state; a rerun must ask for the same plan, from the same bundle and dataset."""
    want = {**plan.recorded(), "bundle": str(bundle.resolve()), "data": str(data.resolve())}
    return read_run_state(out / STATE_FILE, want, {"rounds": []}, "Dyna")


def write_state(out: Path, state: dict[str, Any]) -> None:
    write_run_state(out / STATE_FILE, state)


def wm_step(bundle: Path) -> int:
    from genrl_core.bundle import read_config

    return int(read_config(bundle).get("world_model_train", {}).get("step", 0))


def every_minute(log, label: str) -> Callable[[dict], None]:
    """A learning callback that logs progress at most once a minute (a policy learns for many)."""
    last = time.time()

    def on_progress(m: dict) -> None:
        nonlocal last
        if time.time() - last >= 60:
            last = time.time()
            log(f"[dyna] {label}: update {m['update']}/{m['updates']}, {m['elapsed'] / 60:.1f} min, "
                f"{m['updates_per_s']:.1f} updates/s")
    return on_progress


def learn_and_score(out: Path, plan: DynaPlan, state: dict, record: dict, device: str, log) -> None:
    """Learn (or reuse) each prompt's policy on the current bundle and score it in the simulator."""
    from genrl_core.agent import GenRL

    r = record["round"]
    agent = GenRL.load(out / "bundle", device=device, policies_dir=out / f"round_{r:02d}" / "policies")
    for d in plan.drivers:
        if d.name in record["policies"]:
            continue
        policy = agent.learn(d.prompt, {**dict(plan.settings), **dict(d.settings)}, progress=False,
                             callback=every_minute(log, f"round {r} {d.name}"))
        row = {"slug": policy.slug, "path": str(policy.path), "updates": policy.meta.updates_done,
               "learn_minutes": round(policy.meta.train_seconds / 60, 1)}
        if d.task and plan.eval_episodes:
            ev = agent.evaluate(policy, d.task, episodes=plan.eval_episodes, seed=EVAL_SEED)
            row.update(normalised=ev["normalised"], mean_return=ev["mean_return"], returns=ev["returns"],
                       imagined_return=agent.imagined_return(policy, d.task, plan.eval_episodes, EVAL_SEED))
        record["policies"][d.name] = row
        write_state(out, state)
        score = "" if "mean_return" not in row else (f": return {row['mean_return']} (normalised {row['normalised']}, "
                                                     f"imagined {row['imagined_return']})")
        log(f"[dyna] round {r} {d.name}: {row['updates']} updates, {row['learn_minutes']} min{score}")


def run_round(out: Path, r: int, plan: DynaPlan, state: dict, device: str, workers: int, log,
              last: bool) -> None:
    """The unfinished stages of round r; `last` rounds only learn and score."""
    from genrl_core.bundle import Bundle, read_config
    from genrl_core.data.collect import collect
    from genrl_core.train.behaviour import build_start_states
    from genrl_core.train.connector import train_connector
    from genrl_core.train.reward_head import train_reward_heads
    from genrl_core.train.world_model import train_world_model
    from genrl_core.vlm import embed_dataset, load_vlm

    while len(state["rounds"]) <= r:
        state["rounds"].append({"round": len(state["rounds"]), "done": [], "policies": {}})
    record = state["rounds"][r]
    bundle, data = out / "bundle", out / "data"
    config = read_config(bundle)
    body = config.get("body")
    preset = config.get("world_model_preset", "small")  # the stages resume with the bundle's sizes
    dataset = json.loads((data / "dataset.json").read_text())
    record.setdefault("wm_step", wm_step(bundle))

    def collect_all() -> None:
        for d in plan.drivers:
            collect(body, f"learned:{record['policies'][d.name]['path']}", plan.episodes, data,
                    seed=dataset.get("seed", 0), size=dataset.get("size", 64), workers=workers, bundle=bundle, log=log)

    def fine_tune() -> None:
        target = record["wm_step"] + plan.wm_updates
        overrides = [f"train.steps={target}", f"train.max_minutes={plan.wm_minutes}"]
        train_world_model(data, bundle, preset=preset, overrides=overrides, device=device, progress=False, log=log)

    def refresh() -> None:
        wm = Bundle(bundle).load_world_model(device)
        build_start_states(wm, data, bundle, log=log)
        if Bundle(bundle).reward_heads_file.exists():
            train_reward_heads(wm, data, bundle, progress=False, log=log)
        if plan.connector_updates:
            embed_dataset(data, load_vlm(bundle, device=device), log=log)
            step = int(read_config(bundle).get("connector", {}).get("train", {}).get("step", 0))
            train_connector(data, bundle, preset=preset, overrides=[f"train.steps={step + plan.connector_updates}"],
                            device=device, progress=False, log=log)

    stages = {"learn": lambda: learn_and_score(out, plan, state, record, device, log), "collect": collect_all,
              "world_model": fine_tune, "refresh": refresh}
    for name in STAGES[:1] if last else STAGES:
        if name in record["done"]:
            continue
        log(f"[dyna] round {r}: {name}")
        stages[name]()
        record["done"].append(name)
        if name == "world_model":
            record["wm_step_after"] = wm_step(bundle)
        write_state(out, state)


def run_dyna(bundle: str | Path, data: str | Path, out: str | Path, plan: DynaPlan, device: str = "cpu",
             workers: int = 1, log=print) -> dict[str, Any]:
    """Run (or resume) the plan's rounds plus the closing learn + score; returns the state."""
    from genrl_core.bundle import Bundle
    from genrl_core.config import BehaviourConfig, apply_settings

    out, bundle, data = Path(out), Path(bundle), Path(data)
    apply_settings(BehaviourConfig(), dict(plan.settings), "behaviour")  # bad settings fail before any work
    if any(d.oracle for d in plan.drivers) and not Bundle(bundle).reward_heads_file.exists():
        raise ConfigError(f"oracle prompts need the bundle's reward heads: `genrl train-reward-heads --data {data} "
                          f"--bundle {bundle}`")
    state = read_state(out, plan, bundle, data)
    prepare(out, bundle, data)
    write_state(out, state)
    for r in range(plan.rounds + 1):  # finished stages are skipped inside
        run_round(out, r, plan, state, device, workers, log, last=r == plan.rounds)
    log(report(state))
    log(f"[dyna] the updated bundle is {out / 'bundle'}: `genrl serve --bundle {out / 'bundle'}`")
    return state


def report(state: dict[str, Any]) -> str:
    """A markdown table: one row per world model; per prompt its policy's normalised real score, real
    return and the return the world model imagines for it (the oracle heads' reading)."""
    names = state["plan"]["drivers"]
    lines = ["| round | world-model steps | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for rec in state["rounds"]:
        cells = []
        for name in names:
            row = rec["policies"].get(name)
            if row is None:
                cells.append("")
            elif row.get("normalised") is not None:
                imagined = "" if row.get("imagined_return") is None else f", imagined {row['imagined_return']:.0f}"
                cells.append(f"{row['normalised']:.2f} (return {row['mean_return']:.0f}{imagined})")
            else:
                cells.append(f"{row.get('mean_return', '-')}")
        lines.append(f"| {rec['round']} | {rec['wm_step']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

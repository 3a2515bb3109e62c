"""One resumable command that builds a body's bundle from nothing:

    collect -> world model -> VLM -> embed dataset -> connector + aligner -> start states -> stock policies
    (the standard tasks' stock prompts, learned and scored in the real simulator) -> generalist

    genrl pipeline --body walker --out checkpoints/walker --data data/walker
    genrl pipeline --body walker --out runs/walker --preset paper --device cuda --budget-minutes 9

Every stage resumes where it stopped and is skipped once finished, so the same command
can be rerun in chunks (e.g. under 10 minutes each on a lent GPU box): `--budget-minutes`
stops the running stage cleanly (checkpoint saved) when the time is up.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from genrl_core.bundle import Bundle, read_config


class BudgetExhausted(Exception):
    """The time budget ran out; the running stage saved a checkpoint."""


@contextlib.contextmanager
def time_budget(minutes: float | None) -> Iterator[None]:
    """Turn the end of the budget into a KeyboardInterrupt, which every training loop checkpoints on."""
    if not minutes:
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, minutes * 60)
    try:
        yield
    except KeyboardInterrupt:
        raise BudgetExhausted from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def stage_status(out: Path, data: Path, body: str, recipe: str, preset: str) -> dict[str, bool]:
    """Which stages are finished, read from what is on disk."""
    from genrl_core.config import preset as get_preset
    from genrl_core.data.collect import Policy
    from genrl_core.data.recipes import get_recipe
    from genrl_core.data.store import EpisodeStore
    from genrl_core.generalist import generalist_problem

    store = EpisodeStore(data)
    collected = all(store.exists(f"{Policy.parse(p, body).slug}-{i:05d}")
                    for p, n in get_recipe(body, recipe) for i in range(n))
    cfg = read_config(out)
    wm_steps = cfg.get("world_model_train", {}).get("steps", get_preset("world_model", preset)["train"].steps)
    vlm_train = cfg.get("vlm_train", {})
    conn_train = cfg.get("connector", {}).get("train", {})
    files = Bundle(out)
    digest = files.world_model_digest() if files.world_model_file.is_file() else None  # hashed once
    return {
        "collect": collected,
        "world_model": cfg.get("world_model_train", {}).get("step", 0) >= wm_steps,
        "vlm": bool(vlm_train) and vlm_train.get("step", 0) >= vlm_train.get("steps", 1),
        "connector": bool(conn_train) and conn_train.get("step", 0) >= conn_train.get("steps", 1),
        "start_states": files.start_states_current(),
        "generalist": digest is not None and generalist_problem(out, digest) is None,
        "stock_policies": digest is not None and stock_policies_done(files, body, digest),
    }


def stock_prompts(body: str) -> list[tuple[str, str]]:
    """(task, prompt) of the body's standard tasks: the policies a bundle ships, so that the CLI and
    the app reuse them at once and show their real scores."""
    from genrl_core.envs import STOCK_PROMPTS, body_tasks

    return [(t.name, STOCK_PROMPTS[t.name]) for t in body_tasks(body) if t.standard]


def stock_policies_done(files: Bundle, body: str, digest: str) -> bool:
    """Every stock prompt has a finished policy on the world model of `digest`, with its real-env record."""
    from genrl_core.evaluate import RECORD_FILE
    from genrl_core.policies import PolicyStore

    store = PolicyStore(files.policies_dir, files.policies_dir, digest)
    done = {p.meta.prompt for p in store.list() if p.meta.world_model == digest and (p.path / RECORD_FILE).is_file()}
    return all(prompt in done for _, prompt in stock_prompts(body))


def learn_stock_policies(out: Path, body: str, preset: str, device: str, log) -> None:
    """The stock-policies stage: each stock prompt learned with the preset's default settings (a
    finished one is reused) and scored on its task (seeds 1000 on), the score and episode 0's video
    kept in the policy's folder as `genrl evaluate --record` keeps them."""
    from genrl_core.agent import GenRL
    from genrl_core.evaluate import RECORD_FILE

    agent = GenRL.load(out, device=device, behaviour_preset=preset)
    episodes = 1 if preset == "tiny" else 3
    for task, prompt in stock_prompts(body):
        policy = agent.learn(prompt, progress=False)
        if (policy.path / RECORD_FILE).is_file():
            continue
        result = agent.record(policy, task, episodes)
        log(f"[pipeline] {prompt!r} ({policy.slug}, {policy.meta.updates_done} updates) on {task}: "
            f"normalised {result['normalised']}, returns {result['returns']}")


# the tiny preset's generalist: a few updates on a small pool, so that a tiny pipeline ends in seconds
TINY_GENERALIST = ({"updates": 4, "batch": 8, "hidden": 32, "layers": 1}, {"prompts": 10, "windows": 0, "random": 4})


def train_bundle_generalist(out: Path, data: Path, preset: str, device: str, log) -> None:
    """The generalist stage: the bundle's one policy for any prompt (`genrl train-generalist`), with its
    default settings (a tiny one for the tiny preset)."""
    from genrl_core.agent import GenRL
    from genrl_core.generalist import GeneralistPlan, train_generalist

    settings, pool = TINY_GENERALIST if preset == "tiny" else ({}, {})
    train_generalist(GenRL.load(out, device=device), settings, GeneralistPlan(**pool), data=data, log=log)


def run_pipeline(body: str, out: str | Path, data: str | Path, preset: str = "small", recipe: str = "default",
                 device: str = "cpu", workers: int = 1, budget_minutes: float | None = None,
                 overrides: list[str] | None = None, init_from: str | Path | None = None,
                 log=print) -> dict[str, float]:
    """Run the unfinished stages in order; returns seconds spent per stage in this call."""
    from genrl_core.data.collect import collect
    from genrl_core.data.recipes import get_recipe
    from genrl_core.train.behaviour import build_start_states
    from genrl_core.train.connector import train_connector
    from genrl_core.train.vlm import train_vlm
    from genrl_core.train.world_model import train_world_model
    from genrl_core.vlm import embed_dataset, load_vlm

    out, data = Path(out), Path(data)
    get_recipe(body, recipe)  # validate before any work
    times: dict[str, float] = {}
    stages = [
        ("collect", lambda: [collect(body, p, n, data, workers=workers, log=log) for p, n in get_recipe(body, recipe)]),
        ("world_model", lambda: train_world_model(data, out, preset=preset, overrides=overrides, device=device,
                                                  body=body, init_from=init_from, log=log)),
        ("vlm", lambda: train_vlm(data, out, device=device, preset=preset, init_from=init_from, log=log)),
        ("connector", lambda: (embed_dataset(data, load_vlm(out, device=device), log=log),
                               train_connector(data, out, device=device, preset=preset, log=log))),
        ("start_states", lambda: build_start_states(Bundle(out).load_world_model(device), data, out,
                                                    count=512 if preset == "tiny" else 4096, log=log)),
        # the stock policies before the generalist: they make the bundle useful in the app sooner
        ("stock_policies", lambda: learn_stock_policies(out, body, preset, device, log)),
        ("generalist", lambda: train_bundle_generalist(out, data, preset, device, log)),
    ]
    deadline = time.time() + budget_minutes * 60 if budget_minutes else None
    for name, run in stages:
        if stage_status(out, data, body, recipe, preset)[name]:
            log(f"[pipeline] {name}: finished, skipping")
            continue
        left = (deadline - time.time()) / 60 if deadline else None
        if left is not None and left <= 0:
            log(f"[pipeline] time budget used up before {name}; rerun the same command to continue")
            return times
        log(f"[pipeline] {name}: running" + (f" ({left:.1f} min left in the budget)" if left else ""))
        t0 = time.time()
        try:
            with time_budget(left):
                run()
        except BudgetExhausted:
            times[name] = time.time() - t0
            log(f"[pipeline] time budget reached during {name} (checkpoint saved); rerun to continue")
            return times
        times[name] = time.time() - t0
        log(f"[pipeline] {name}: done in {times[name] / 60:.1f} min")
    log(f"[pipeline] bundle {out} is complete: try `genrl target \"stand up straight\" --bundle {out}`")
    return times

"""`genrl` command line: one subcommand per job; every argument documented in --help.

These are the core's commands; the app's (`serve`, `worker`) join them in app/cli.py, whose `main`
is the `genrl` console script, so that genrl_core never imports the app.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from genrl_core.cli_flags import (
    LEARNED_BUNDLE_HELP,
    VLM_FLAGS,
    add_flags,
    add_plan_flags,
    add_settings,
    plan_values,
    settings_given,
)
from genrl_core.config import check_target_samples, parse_settings
from genrl_core.errors import ConfigError, GenRLError, MissingFileError
from genrl_core.prompt import STEPS_HELP

# PracticePlan and DynaPlan fields with flags of their own (--driver / --prompt, --set), not generated
PRACTICE_OWN_FLAGS = DYNA_OWN_FLAGS = ("drivers", "settings")
# what a front end adds to the core's subcommands (app/cli.py: serve, worker)
AddCommands = Callable[[argparse._SubParsersAction], None]


def _cmd_envs(args: argparse.Namespace) -> None:
    from genrl_core.data.experts import EXPERTS_DIR
    from genrl_core.envs import BODIES, body_tasks

    for body in BODIES:
        print(f"{body}:")
        for t in body_tasks(body):
            kind = "standard" if t.standard else "custom"
            expert = "expert" if (EXPERTS_DIR / f"{t.name}.json").exists() else ""
            print(f"  {t.name:24s} {kind:8s} {expert:6s} {t.doc}")


def _cmd_collect(args: argparse.Namespace) -> None:
    from genrl_core.data.collect import check_dataset_meta, collect
    from genrl_core.data.recipes import get_recipe
    from genrl_core.data.store import EpisodeStore

    if args.recipe:
        plan = get_recipe(args.body, args.recipe)
        check_dataset_meta(args.out, args.body, args.seed, args.size, recipe=[list(p) for p in plan])
    else:
        plan = [(args.policy, args.episodes)]
    for policy, episodes in plan:
        collect(args.body, policy, episodes, args.out, seed=args.seed, workers=args.workers, size=args.size,
                bundle=args.bundle)
    summary = EpisodeStore(args.out).summary()
    print(f"[collect] done: {summary['episodes']} episodes, {summary['steps']} frames in {args.out}: "
          f"{summary['policies']}")


def _cmd_experts(args: argparse.Namespace) -> None:
    from genrl_core.data.experts import evaluate_experts

    evaluate_experts(args.tasks.split(","), args.episodes, workers=args.workers, record=args.record)


def _cmd_video(args: argparse.Namespace) -> None:
    import numpy as np

    from genrl_core.data.collect import Policy, run_episode
    from genrl_core.video import write_mp4

    ep = run_episode(args.body, Policy.parse(args.policy, args.body, args.bundle), args.seed, size=args.size)
    path = write_mp4(args.out, ep["image"], fps=20, upscale=args.upscale)
    returns = dict(zip(ep["task_names"], np.round(ep["task_rewards"].sum(0), 1).tolist(), strict=True))
    print(f"[video] {args.body} {args.policy}: true returns {returns}")
    print(f"[video] wrote {path}")


def _cmd_pack_data(args: argparse.Namespace) -> None:
    from genrl_core.data.pack import pack_dataset

    pack_dataset(args.data, args.out, crf=args.crf, fields=args.fields, workers=args.workers)


def _cmd_unpack_data(args: argparse.Namespace) -> None:
    from genrl_core.data.pack import unpack_dataset

    unpack_dataset(args.packed, args.out, workers=args.workers)


def _cmd_train_wm(args: argparse.Namespace) -> None:
    from genrl_core.train.world_model import train_world_model

    train_world_model(args.data, args.out, preset=args.preset, overrides=settings_given(args), device=args.device,
                      body=args.body, progress=not args.no_progress, init_from=args.init_from)


def _cmd_eval_wm(args: argparse.Namespace) -> None:
    from genrl_core.wm_eval import evaluate_open_loop

    evaluate_open_loop(args.bundle, args.data, args.out, episodes=args.episodes, context=args.context,
                       horizon=args.horizon)


def _cmd_train_vlm(args: argparse.Namespace) -> None:
    from genrl_core.train.vlm import train_vlm

    train_vlm(args.data, args.out, preset=args.preset, overrides=settings_given(args), device=args.device,
              progress=not args.no_progress, init_from=args.init_from)


def _cmd_embed_dataset(args: argparse.Namespace) -> None:
    from genrl_core.vlm import embed_dataset, load_vlm

    vlm = load_vlm(args.bundle, backend=args.vlm_backend, arch=args.vlm_arch, pretrained=args.vlm_pretrained,
                   checkpoint=args.vlm_checkpoint, device=args.device, allow_download=args.vlm_download)
    print(f"[embed-dataset] cached in {embed_dataset(args.data, vlm)}")


def _cmd_train_connector(args: argparse.Namespace) -> None:
    from genrl_core.train.connector import train_connector

    train_connector(args.data, args.bundle, preset=args.preset, overrides=settings_given(args), device=args.device,
                    progress=not args.no_progress, warm_start=args.warm_start)


def _cmd_pipeline(args: argparse.Namespace) -> None:
    from genrl_core.pipeline import run_pipeline

    times = run_pipeline(args.body, args.out, args.data or f"data/{args.body}", preset=args.preset,
                         recipe=args.recipe, device=args.device, workers=args.workers,
                         budget_minutes=args.budget_minutes, overrides=settings_given(args),
                         init_from=args.init_from)
    print("[pipeline] minutes per stage this run: " + ", ".join(f"{k} {v / 60:.1f}" for k, v in times.items()))


def _cmd_target(args: argparse.Namespace) -> None:
    import time

    from genrl_core.agent import GenRL
    from genrl_core.video import write_mp4

    if args.samples is not None:
        check_target_samples(args.samples, "--samples")  # before the bundle loads
    agent = GenRL.load(args.bundle, device=args.device)
    t0 = time.perf_counter()
    prompt = Path(args.video) if args.video else args.prompt
    if prompt is None:
        raise ConfigError("give a text prompt or --video FILE")
    frames = agent.decode(agent.target(prompt, steps=args.steps, use_aligner=not args.no_aligner,
                                       samples=args.samples))
    secs = time.perf_counter() - t0
    path = write_mp4(args.out, frames, upscale=4)
    print(f"[target] {prompt!s}: {len(frames)} steps decoded in {secs:.2f}s -> {path}")




def _load_agent(args: argparse.Namespace):
    from genrl_core.agent import GenRL

    return GenRL.load(args.bundle, device=args.device, policies_dir=args.policies_dir)


def _cmd_learn(args: argparse.Namespace) -> None:
    import json

    agent = _load_agent(args)
    policy = agent.learn(args.prompt, parse_settings(settings_given(args)), progress=not args.no_progress)
    meta = policy.meta
    verb = "reused" if policy.reused else "learned"
    print(f"[learn] {verb} {policy.slug} ({meta.updates_done} updates, {meta.train_seconds:.0f}s) "
          f"-> {policy.path}", file=sys.stderr)
    print(json.dumps({"slug": policy.slug, "prompt": meta.prompt, "updates_done": meta.updates_done,
                      "train_seconds": meta.train_seconds, "path": str(policy.path), "reused": policy.reused}))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    import json

    from genrl_core.evaluate import RECORD_FILE, RECORD_VIDEO

    if args.record and (args.video or args.max_steps):
        # a record is the policy's real score, which a part of an episode is not; its video is episode 0's
        raise ConfigError("--record keeps whole episodes and writes its own video: drop --max-steps and --video")
    agent = _load_agent(args)
    if args.record:
        out = agent.record(args.policy, args.task, args.episodes, args.seed)
    else:
        out = agent.evaluate(args.policy, args.task, args.episodes, args.video, args.seed, args.max_steps)
    score = "n/a" if out["normalised"] is None else f"{out['normalised']:.2f}"
    print(f"[evaluate] {args.policy} on {out['task']}: return {out['mean_return']} {out['returns']}, "
          f"normalised {score} (random {out['random_return']}, expert {out['expert_return']}, "
          f"{out['reference_source']})", file=sys.stderr)
    if args.record:
        folder = agent.policies.get(args.policy).path
        print(f"[evaluate] recorded -> {folder / RECORD_FILE}, {folder / RECORD_VIDEO}", file=sys.stderr)
    print(json.dumps(out))


def _cmd_dyna(args: argparse.Namespace) -> None:
    from genrl_core.dyna import Driver, DynaPlan, run_dyna

    plan = DynaPlan(drivers=tuple(Driver.parse(p) for p in args.prompt),
                    settings=tuple(parse_settings(args.set).items()), **plan_values(args, DynaPlan, DYNA_OWN_FLAGS))
    run_dyna(args.bundle, args.data, args.out, plan, device=args.device, workers=args.workers)


def _cmd_practice(args: argparse.Namespace) -> None:
    from genrl_core.practice import PracticeDriver, PracticePlan, run_practice

    plan = PracticePlan(drivers=tuple(PracticeDriver.parse(d) for d in args.driver),
                        settings=tuple(parse_settings(args.set).items()),
                        **plan_values(args, PracticePlan, PRACTICE_OWN_FLAGS))
    run_practice(args.bundle, args.data, args.out, plan, device=args.device, workers=args.workers,
                 minutes=args.minutes, env_workers=args.env_workers, ray_address=args.ray_address)


def _cmd_train_generalist(args: argparse.Namespace) -> None:
    from genrl_core.generalist import GeneralistPlan, train_generalist

    meta = train_generalist(_load_agent(args), parse_settings(settings_given(args)),
                            GeneralistPlan(**plan_values(args, GeneralistPlan)), args.data,
                            progress=not args.no_progress, warm_from=args.warm_from)
    print(f"[train-generalist] {meta.updates_done} updates ({meta.train_seconds:.0f}s) -> "
          f"{Path(args.bundle) / 'generalist'}", file=sys.stderr)


def _cmd_act(args: argparse.Namespace) -> None:
    import json
    import time

    agent = _load_agent(args)
    t0 = time.perf_counter()
    policy = agent.act(args.prompt)
    secs = time.perf_counter() - t0
    out = agent.evaluate(policy, args.task, args.episodes, args.video, args.seed, args.max_steps)
    score = "n/a" if out["normalised"] is None else f"{out['normalised']:.2f}"
    print(f"[act] {args.prompt!r}: a policy in {secs:.2f}s; on {out['task']}: return {out['mean_return']} "
          f"{out['returns']}, normalised {score}", file=sys.stderr)
    print(json.dumps({"prompt": args.prompt, "policy_seconds": round(secs, 3), **out}))


def _cmd_policies(args: argparse.Namespace) -> None:
    for policy in _load_agent(args).policies.list():
        meta = policy.meta
        print(f"{policy.slug}\t{meta.prompt!r}\t{meta.updates_done} updates\t{meta.train_seconds:.0f}s")


def _cmd_start_states(args: argparse.Namespace) -> None:
    from genrl_core.bundle import Bundle
    from genrl_core.train.behaviour import build_start_states

    build_start_states(Bundle(args.bundle).load_world_model(args.device), args.data, args.bundle, count=args.count)


def _cmd_train_reward_heads(args: argparse.Namespace) -> None:
    from genrl_core.bundle import Bundle
    from genrl_core.train.reward_head import train_reward_heads

    train_reward_heads(Bundle(args.bundle).load_world_model(args.device), args.data, args.bundle, steps=args.updates,
                       progress=not args.no_progress)


def _cmd_train_bc_prior(args: argparse.Namespace) -> None:
    from genrl_core.bundle import Bundle
    from genrl_core.train.bc_prior import train_bc_prior

    if args.updates < 1:
        raise ConfigError(f"--updates must be >= 1, got {args.updates}")
    train_bc_prior(Bundle(args.bundle).load_world_model(args.device), args.data, args.bundle, steps=args.updates,
                   progress=not args.no_progress)


def _cmd_logs(args: argparse.Namespace) -> None:
    import subprocess

    from genrl_core.train.loop import TENSORBOARD_DIR

    root = Path(args.bundle)
    if not root.is_dir():
        raise MissingFileError(f"no folder {root}")
    runs = sorted(p for p in root.rglob(f"{TENSORBOARD_DIR}/*") if p.is_dir() and any(p.glob("events.out.*")))
    for run in runs:
        print(f"[logs] {run.relative_to(root)}: last step {_last_logged_step(run)}")
    if not runs:
        raise MissingFileError(f"no TensorBoard event files under {root} (each training run writes them)")
    if args.list:
        return
    print(f"[logs] TensorBoard on http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "tensorboard.main", "--logdir", str(root), "--host", args.host,
                    "--port", str(args.port)], check=False)


def _last_logged_step(run: Path) -> int | None:
    """The last step any scalar of one run was logged at, read from its event files."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        raise ConfigError("`genrl logs` needs TensorBoard: pip install -r requirements.txt "
                          "(the JSONL logs beside the event files hold the same numbers)") from None

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    steps = [event.step for tag in acc.Tags()["scalars"] for event in acc.Scalars(tag)]
    return max(steps) if steps else None


def _add_loop_parser(sub: argparse._SubParsersAction, name: str, plan: type, own_flags: tuple[str, ...],
                     func: Callable[[argparse.Namespace], int], *, help: str, repeat: tuple[str, str],
                     workers_help: str, out_help: str, set_help: str) -> argparse.ArgumentParser:
    """The parser of a collect-and-learn loop (`dyna`, `practice`): who acts (a repeatable flag), where from, where
    to, the plan's own flags generated from its dataclass, and behaviour settings for every learner."""
    p = sub.add_parser(name, help=help)
    p.add_argument(repeat[0], action="append", required=True, help=repeat[1])
    add_flags(p, "bundle", "data", "device", "workers", bundle={"help": "bundle to start from (copied, not changed)"},
              workers={"help": workers_help})
    p.add_argument("--out", required=True, help=out_help)
    add_plan_flags(p, plan, own_flags)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help=set_help)
    p.set_defaults(func=func)
    return p


def build_parser(add_commands: AddCommands | None = None) -> argparse.ArgumentParser:
    """The core's subcommands, and those `add_commands` adds to them (app/cli.py's)."""
    from genrl_core.data.recipes import POLICY_HELP
    from genrl_core.dyna import DynaPlan

    parser = argparse.ArgumentParser(prog="genrl", description="GenRL: prompt -> policy, learned in a world model.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("envs", help="list bodies and their tasks (standard/custom, expert available)")
    p.set_defaults(func=_cmd_envs)

    p = sub.add_parser("collect", help="collect pixel episodes into a dataset folder (resumable)")
    add_flags(p, "body", "seed", "size", "workers", "bundle",
              workers={"help": "parallel worker processes (one episode each)"}, bundle=LEARNED_BUNDLE_HELP)
    p.add_argument("--out", required=True, help="dataset folder (created; rerunning resumes)")
    p.add_argument("--policy", default="random", help=f"behaviour: {POLICY_HELP}")
    p.add_argument("--episodes", type=int, default=10, help="number of episodes of --policy (500 steps each)")
    p.add_argument("--recipe", default=None,
                   help="collect a whole named dataset mixture instead of one policy (e.g. default, tiny)")
    p.set_defaults(func=_cmd_collect)

    p = sub.add_parser("video", help="roll one episode of a policy and write it as an mp4")
    add_flags(p, "body", "seed", "size", "bundle", body={"required": False, "default": "walker"},
              bundle=LEARNED_BUNDLE_HELP)
    p.add_argument("--policy", default="expert:walker_walk", help=f"behaviour: {POLICY_HELP}")
    p.add_argument("--out", default="out/episode.mp4", help="mp4 path")
    p.add_argument("--upscale", type=int, default=4, help="pixel repeat factor for viewing")
    p.set_defaults(func=_cmd_video)

    p = sub.add_parser("pack-data", help="write a compact (H.264) copy of a dataset, to carry it to a GPU box")
    add_flags(p, "data", "workers")
    p.add_argument("--out", required=True, help="folder for the packed copy (rerunning skips packed episodes)")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality: 0 lossless .. 51; 18 ~34 dB, 20 ~33 dB")
    p.add_argument("--fields", default="all",
                   help="all | train (only what world-model training reads: smallest) | practice (train plus "
                        "every task's reward, for `genrl practice` on a GPU box)")
    p.set_defaults(func=_cmd_pack_data)

    p = sub.add_parser("unpack-data", help="decode a packed dataset back into plain episodes")
    add_flags(p, "workers")
    p.add_argument("--packed", required=True, help="folder written by `genrl pack-data`")
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.set_defaults(func=_cmd_unpack_data)

    p = sub.add_parser("train-wm", help="train (or resume) the RSSM world model of a bundle")
    add_flags(p, "data", "device", "no-progress", "init-from")
    p.add_argument("--out", required=True, help="bundle folder; rerunning with the same folder resumes")
    p.add_argument("--body", default=None, help="body name recorded in the bundle (walker, ...)")
    add_settings(p, "world_model", "train.steps=5000 model.deter=512 train.amp=none")
    p.set_defaults(func=_cmd_train_wm)

    p = sub.add_parser("eval-wm", help="open-loop video prediction of a world model: PSNR per step + mp4")
    add_flags(p, "bundle", "data", bundle={"required": True, "default": None,
                                           "help": "bundle folder with a trained world model"},
              data={"help": "dataset folder (its held-out episodes are used)"})
    p.add_argument("--out", default="out/eval_wm", help="folder for open_loop.json and open_loop.mp4")
    p.add_argument("--episodes", type=int, default=5, help="held-out episodes to use (5 windows each)")
    p.add_argument("--context", type=int, default=5, help="true frames given before predicting")
    p.add_argument("--horizon", type=int, default=45, help="frames predicted open-loop")
    p.set_defaults(func=_cmd_eval_wm)

    p = sub.add_parser("train-vlm", help="train (or resume) the embedded VLM of a bundle on a dataset")
    add_flags(p, "data", "device", "no-progress", "init-from",
              init_from={"help": "start a new VLM from this bundle's (same sizes), e.g. checkpoints/walker"})
    p.add_argument("--out", required=True, help="bundle folder; rerunning with the same folder resumes")
    add_settings(p, "vlm", "train.steps=500 train.batch=16 model.width=128")
    p.set_defaults(func=_cmd_train_vlm)

    p = sub.add_parser("embed-dataset", help="cache VLM window embeddings next to a dataset's episodes")
    add_flags(p, "data", "bundle", "device", *VLM_FLAGS, bundle={"default": None,
                                                                 "help": "bundle whose embedded VLM to use"})
    p.set_defaults(func=_cmd_embed_dataset)

    p = sub.add_parser("train-connector", help="train (or resume) the connector and aligner of a bundle")
    add_flags(p, "data", "bundle", "device", "no-progress",
              data={"help": "dataset folder with cached embeddings (genrl embed-dataset)"},
              bundle={"required": True, "default": None, "help": "bundle with a trained world model and VLM"})
    p.add_argument("--warm-start", action="store_true",
                   help="with no training state to resume, start from the bundle's connector and aligner (counting "
                        "on from their step), e.g. after `genrl practice` changed the world model; train.steps is "
                        "then the total including those")
    add_settings(p, "connector", "train.steps=2000 train.batch=8")
    p.set_defaults(func=_cmd_train_connector)

    p = sub.add_parser("target", help="decode the target trajectory a prompt means, as an mp4")
    p.add_argument("prompt", nargs="?", default=None, help='text prompt, e.g. "stand up straight"')
    p.add_argument("--video", default=None, help="video prompt file (mp4, webm, gif) instead of text")
    add_flags(p, "bundle", "device")
    p.add_argument("--steps", type=int, default=32, help=STEPS_HELP)
    p.add_argument("--out", default="out/target.mp4", help="mp4 path")
    p.add_argument("--no-aligner", action="store_true", help="skip the aligner (ablation)")
    p.add_argument("--samples", type=int, default=None,
                   help="0: the connector's mode rollout; N: the best of N sampled rollouts by the VLM "
                        "(default: learning's target_samples, so that this is what a policy learns to match)")
    p.set_defaults(func=_cmd_target)

    p = sub.add_parser("pipeline", help="build a bundle from nothing: collect, world model, VLM, connector, start "
                                        "states, stock policies, generalist")
    add_flags(p, "body", "device", "workers", "init-from", workers={"help": "collection worker processes"})
    p.add_argument("--out", required=True, help="bundle folder (rerun to resume; finished stages are skipped)")
    p.add_argument("--data", default=None, help="dataset folder (default data/BODY)")
    p.add_argument("--recipe", default="default", help="dataset recipe (genrl_core/data/recipes.py)")
    p.add_argument("--budget-minutes", type=float, default=None,
                   help="stop cleanly (checkpoint saved) after this many minutes; rerun to continue")
    add_settings(p, "world_model", "train.steps=5000 (world-model settings; the other stages use the preset)")
    p.set_defaults(func=_cmd_pipeline)

    p = sub.add_parser("learn", help="learn a policy for a prompt in imagination (resumes; reuses a finished one)")
    p.add_argument("prompt", help='what the body should do, e.g. "run fast", or a video file path')
    add_flags(p, "bundle", "policies-dir", "device", "no-progress")
    add_settings(p, "behaviour", "updates=3000 reward=cosine use_aligner=false start=data_free")
    p.set_defaults(func=_cmd_learn)

    p = sub.add_parser("evaluate", help="score a learned policy in the real simulator with a task's true reward")
    p.add_argument("--policy", required=True, help="policy slug (see `genrl policies`)")
    p.add_argument("--task", default=None, help="e.g. walker_run (default: the task nearest to the policy's prompt)")
    p.add_argument("--episodes", type=int, default=5, help="episodes of 1000 env steps")
    p.add_argument("--max-steps", type=int, default=None, help="stop episodes early (agent steps), for quick looks")
    p.add_argument("--video", default=None, help="write episode 0 to this mp4")
    p.add_argument("--record", action="store_true",
                   help="keep the score and episode 0's video in the policy's folder (real.json, real.mp4): the "
                        "app shows them for the policy")
    add_flags(p, "seed", "bundle", "policies-dir", "device")
    p.set_defaults(func=_cmd_evaluate)

    from genrl_core.practice import ENV_WORKERS, PracticePlan

    _add_loop_parser(
        sub, "dyna", DynaPlan, DYNA_OWN_FLAGS, _cmd_dyna,
        help="rounds of: learn policies, collect with them, fine-tune the world model (resumes)",
        repeat=("--prompt", 'repeatable: "TEXT", "TEXT@TASK" (scored on TASK) or "oracle:TASK" (the task\'s reward '
                            'head)'),
        workers_help="collection worker processes",
        out_help="run folder: the updated bundle, data and dyna.json (rerun to resume)",
        set_help="behaviour settings for every policy, as `genrl learn` takes them, e.g. max_minutes=5")
    p = _add_loop_parser(
        sub, "practice", PracticePlan, PRACTICE_OWN_FLAGS, _cmd_practice,
        help="online loop: the policies collect, the world model and every policy keep learning; scores a learning "
             "curve; ends with a bundle (resumes)",
        repeat=("--driver", 'repeatable: "oracle:TASK" (the task\'s reward head), "TEXT@TASK" (a prompt, scored on '
                            'TASK), "TEXT" or "explore" (random poses, acting with the learners\' policies)'),
        workers_help="env worker processes",
        out_help="run folder: bundle/, data/, practice.json (rerun to resume)",
        set_help="behaviour settings of every learning driver, as `genrl learn` takes them, e.g. horizon=16")
    p.add_argument("--minutes", type=float, default=0.0,
                   help="practise at most this long in this run (the cycle under way ends first), then score and "
                        "write the bundle; rerun to go on (default %(default)s: until --frames)")
    p.add_argument("--env-workers", choices=ENV_WORKERS, default=ENV_WORKERS[0],
                   help="where episodes are rolled: --workers local processes (default), or Ray tasks of one CPU "
                        "each on a cluster (--workers is then unused: the cluster's CPUs set the parallelism)")
    p.add_argument("--ray-address", default=None,
                   help="with --env-workers ray: the cluster to join ('auto', or HOST:PORT); default: start a "
                        "local Ray instance")

    p = sub.add_parser("train-generalist", help="train (or resume) the bundle's generalist: one policy for any "
                                                "prompt, conditioned on its target")
    from genrl_core.generalist import GeneralistPlan

    add_flags(p, "bundle", "device", "no-progress", bundle={"help": "bundle folder (the generalist goes to "
                                                                    "BUNDLE/generalist)"})
    p.add_argument("--data", default=None, help="dataset folder: adds targets from its video windows (optional)")
    p.add_argument("--warm-from", default=None, metavar="DIR",
                   help="another generalist's folder whose weights start this one, e.g. OLD_BUNDLE/generalist "
                        "after practice made a new bundle from OLD_BUNDLE (default: from scratch)")
    add_plan_flags(p, GeneralistPlan)
    add_settings(p, "behaviour", "updates=20000 max_minutes=60 batch=256")
    p.set_defaults(func=_cmd_train_generalist, policies_dir=None)

    p = sub.add_parser("act", help="zero-shot: the generalist's policy for a prompt, scored in the real simulator")
    p.add_argument("prompt", help='what the body should do, e.g. "run fast", or a video file path')
    p.add_argument("--task", default=None, help="e.g. walker_run (default: the task nearest to the prompt)")
    p.add_argument("--episodes", type=int, default=1, help="episodes of 1000 env steps")
    p.add_argument("--max-steps", type=int, default=None, help="stop episodes early (agent steps), for quick looks")
    p.add_argument("--video", default=None, help="write episode 0 to this mp4")
    add_flags(p, "seed", "bundle", "device")
    p.set_defaults(func=_cmd_act, policies_dir=None)

    p = sub.add_parser("policies", help="list the finished policies of a bundle")
    add_flags(p, "bundle", "policies-dir", "device")
    p.set_defaults(func=_cmd_policies)

    p = sub.add_parser("logs", help="open a bundle's training curves (every stage and policy) in TensorBoard")
    p.add_argument("bundle", help="bundle (or any) folder; its tensorboard/ event folders are found below it")
    p.add_argument("--port", type=int, default=6006, help="TensorBoard port")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on all interfaces")
    p.add_argument("--list", action="store_true", help="only list the runs found, with their last logged step")
    p.set_defaults(func=_cmd_logs)

    p = sub.add_parser("start-states", help="store dataset posterior states in a bundle (behaviour learning starts)")
    add_flags(p, "data", "bundle", "device", data={"help": "dataset folder the world model was trained on"},
              bundle={"required": True, "default": None})
    p.add_argument("--count", type=int, default=4096, help="number of states (~0.5 KB each)")
    p.set_defaults(func=_cmd_start_states)

    p = sub.add_parser("train-reward-heads",
                       help="fit oracle true-reward heads on the world model's latents (the score ladder's ceiling)")
    add_flags(p, "data", "bundle", "device", "no-progress",
              data={"help": "dataset folder with task rewards (from `genrl collect`)"},
              bundle={"required": True, "default": None, "help": "bundle with a trained world model"})
    p.add_argument("--updates", type=int, default=2000, help="updates of batch 16 x 32 steps")
    p.set_defaults(func=_cmd_train_reward_heads)

    p = sub.add_parser("train-bc-prior", help="fit a behaviour-cloning prior to the dataset's actions on the world "
                                              "model's latents (for the bc_weight behaviour setting)")
    add_flags(p, "data", "bundle", "device", "no-progress", data={"help": "dataset folder (from `genrl collect`)"},
              bundle={"required": True, "default": None, "help": "bundle with a trained world model"})
    p.add_argument("--updates", type=int, default=2000, help="updates of batch 16 x 32 steps")
    p.set_defaults(func=_cmd_train_bc_prior)

    p = sub.add_parser("experts", help="measure the MPC experts' true returns (1000 env steps per episode)")
    add_flags(p, "workers", workers={"help": "parallel episodes (each planner also uses its threads)"})
    p.add_argument("--tasks", required=True, help="comma-separated tasks, e.g. walker_stand,walker_run")
    p.add_argument("--episodes", type=int, default=5, help="episodes per task")
    p.add_argument("--record", action="store_true", help="write the measured returns into checkpoints/experts/")
    p.set_defaults(func=_cmd_experts)
    if add_commands is not None:
        add_commands(sub)
    return parser


def _stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt  # training loops checkpoint on it, so `kill PID` loses nothing


def main(argv: Sequence[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Run one command (of `parser`, the core's by default); returns the exit status: 2 for a
    user's error, printed without a traceback."""
    args = (parser or build_parser()).parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        # a shell starts a background job with SIGINT ignored; `kill -INT PID` should stop it as Ctrl-C does
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        args.func(args)
    except (GenRLError, OSError) as exc:  # the user's to fix (OSError: a path they gave); anything else is a bug
        print(f"genrl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"genrl {args.command}: interrupted; finished files are kept, rerun to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

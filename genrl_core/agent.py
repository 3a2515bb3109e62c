"""The GenRL facade: one object that the CLI, the REST API, the UI and the tests all call.

    agent = GenRL.load("checkpoints/walker")
    latents = agent.target("stand up straight", steps=32)   # or a video file path
    frames = agent.decode(latents)                           # uint8 (32, 64, 64, 3)
    policy = agent.learn("stand up straight", {"updates": 1500}, callback=print)
    frames = agent.imagine(policy)                           # the policy, dreamed
    agent.evaluate(policy, "walker_stand", episodes=5)       # the policy, in the real simulator
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genrl_core.bundle import Bundle, BundleError, load_torch
from genrl_core.config import apply_settings, check_target_samples
from genrl_core.config import preset as get_preset
from genrl_core.envs.pixel_env import PixelEnv
from genrl_core.envs.tasks import body_tasks
from genrl_core.errors import ConfigError
from genrl_core.evaluate import RECORD_VIDEO, TASK_PHRASES, run_policy, write_record
from genrl_core.generalist import InstantPolicy, generalist_values, load_generalist
from genrl_core.models.actor_critic import Actor, feature
from genrl_core.models.aligner import Aligner
from genrl_core.models.connector import Connector
from genrl_core.models.generalist import BoundActor, target_condition
from genrl_core.models.reward import alignment_scores, make_reward, similarity_matrix
from genrl_core.policies import LearnedPolicy, PolicyMeta, PolicyStore, read_meta
from genrl_core.prompt import Prompt, PromptError, check_steps
from genrl_core.target_choice import best_of_samples
from genrl_core.train.behaviour import BehaviourConfig, LearningCancelled, LearnRun, StartStates, learn_policy
from genrl_core.train.generalist import warm_started
from genrl_core.video import read_video_prompt
from genrl_core.vlm import load_vlm

__all__ = ["GenRL", "LearnPlan", "LearnedPolicy", "LearningCancelled", "Prompt", "PromptError"]

PromptLike = str | Path | Prompt
TARGET_CACHE = 16  # prompts whose target rollout is kept (a few KB each)
RESET_FRAME_CACHE = 256  # seeds whose first real frame is kept (12 KB each)


class _Recent:
    """A thread-safe map that keeps its `size` most recently used entries (the app calls one agent
    from several threads)."""

    def __init__(self, size: int):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@dataclasses.dataclass(frozen=True)
class LearnPlan:
    """One learning request, resolved once (`GenRL.plan`): what it learns and under which name."""

    prompt: Prompt
    cfg: BehaviourConfig  # the defaults with the request's settings applied
    slug: str  # the policy's folder name: same request, same slug
    target: torch.Tensor  # (horizon + 1, stoch, classes): what the policy learns to match


class GenRL:
    def __init__(self, bundle: Path, wm, vlm, connector: Connector, aligner: Aligner, device: torch.device,
                 body: str, policies_dir: Path | None = None, behaviour_preset: str = "small"):
        self.bundle, self.files, self.wm, self.vlm, self.body = bundle, Bundle(bundle), wm, vlm, body
        self.connector, self.aligner, self.device = connector.eval(), aligner.eval(), device
        self.behaviour_defaults: BehaviourConfig = get_preset("behaviour", behaviour_preset)["behaviour"]
        self.wm_digest = self.files.world_model_digest()
        self.policies = PolicyStore(policies_dir or self.files.policies_dir, self.files.policies_dir, self.wm_digest)
        # (prompt identity, aligner, samples) -> the longest target made so far
        self._targets = _Recent(TARGET_CACHE)
        self._reset_frames = _Recent(RESET_FRAME_CACHE)  # seed -> a real first frame (12 KB)
        self._generalist: tuple[Actor, LearnedPolicy] | None = None  # loaded on the first act()

    @classmethod
    def load(cls, bundle: str | Path, device: str = "cpu", policies_dir: str | Path | None = None,
             behaviour_preset: str = "small") -> GenRL:
        """`policies_dir`: where new policies go (default: the bundle's policies/ folder);
        the bundle's own policies/ are always listed too."""
        get_preset("behaviour", behaviour_preset)  # a bad name fails before anything loads
        bundle = Path(bundle)
        files = Bundle(bundle)
        cfg = files.config()
        if not cfg:
            raise BundleError(f"{bundle} is not a bundle (no config.json)")
        if "connector" not in cfg:
            raise BundleError(f"{bundle} has no connector; train one with `genrl train-connector --bundle {bundle}`")
        wm = files.load_world_model(device)
        vlm = load_vlm(bundle, device=device)
        if cfg["connector"].get("vlm") != vlm.name:
            raise BundleError(f"{bundle}: the connector was trained with VLM {cfg['connector'].get('vlm')}, but the "
                              f"bundle's VLM is {vlm.name}; retrain it with `genrl train-connector`")
        connector = Connector(wm.cfg, vlm.embed_dim)
        aligner = Aligner(vlm.embed_dim)
        files.load_connector(connector, aligner)
        dev = torch.device(device)
        for module in (wm, connector, aligner):
            module.requires_grad_(False)  # frozen: behaviour learning only trains the actor and critic
        return cls(bundle, wm, vlm, connector.to(dev), aligner.to(dev), dev, cfg.get("body", "walker"),
                   Path(policies_dir) if policies_dir else None, behaviour_preset)

    def embed_prompt(self, prompt: PromptLike, use_aligner: bool = True) -> torch.Tensor:
        """(D,) embedding of a text prompt or a video file, aligned into the video region."""
        prompt = Prompt.parse(prompt)
        if prompt.is_video:
            emb = self.vlm.embed_video(read_video_prompt(prompt.path)[None])
        else:
            emb = self.vlm.embed_text([prompt.name])
        emb = emb.to(self.device)
        with torch.no_grad():
            return (self.aligner(emb) if use_aligner else emb)[0]

    def target(self, prompt: PromptLike, steps: int = 32, use_aligner: bool = True,
               samples: int | None = None) -> torch.Tensor:
        """Target latent states (steps, stoch, classes) for the prompt: the connector's mode rollout,
        or with `samples` N > 0 the best of N sampled rollouts by the VLM (genrl_core/target_choice.py;
        None: the learning default, `target_samples`). `steps` as a user gives it (prompt.STEPS_HELP)."""
        if samples is None:
            samples = self.behaviour_defaults.target_samples
        check_target_samples(samples, "samples")
        return self._target(Prompt.parse(prompt), check_steps(steps), use_aligner, samples)

    @torch.no_grad()
    def _target(self, prompt: Prompt, steps: int, use_aligner: bool, samples: int) -> torch.Tensor:
        key = (prompt.identity, use_aligner, samples)
        cached = self._targets.get(key)
        # both kinds are deterministic and a shorter target is a prefix of a longer one; two threads
        # may both compute it: the same tensor
        if cached is None or len(cached) < steps:
            raw = self.embed_prompt(prompt, use_aligner=False)  # a video prompt is read and embedded once
            emb = self.aligner(raw[None])[0] if use_aligner else raw
            if samples:  # candidates from the aligned embedding, judged against the prompt's own meaning
                cached, _ = best_of_samples(self.wm, self.connector, self.vlm, emb, raw, steps, samples)
            else:
                cached = self.connector.rollout(emb[None], steps)[0]
            self._targets.put(key, cached)
        return cached[:steps].clone()  # a copy: saved alone (not the longer tensor), and safe to change

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """uint8 frames (T, 64, 64, 3) of latent states (T, stoch, classes)."""
        return self.wm.postprocess(self.wm.decode(latents.to(self.device))).cpu().numpy()

    # ---------------------------------------------------------------- tasks
    def tasks(self) -> list[str]:
        """The body's tasks with a true reward, for evaluation."""
        return [t.name for t in body_tasks(self.body)]

    def guess_task(self, prompt: PromptLike) -> str:
        """The body's task whose plain description is nearest to the prompt in the VLM's text space
        (the first task for a video prompt)."""
        names = self.tasks()
        prompt = Prompt.parse(prompt)
        if prompt.is_video:
            return names[0]
        texts = [TASK_PHRASES.get(n, n.split("_", 1)[1].replace("_", " ")) for n in names]
        emb = self.vlm.embed_text([*texts, prompt.name])
        return names[int((emb[:-1] @ emb[-1]).argmax())]

    # ---------------------------------------------------------------- policies
    def behaviour_config(self, settings: dict[str, Any] | None = None) -> BehaviourConfig:
        """The defaults with `settings` (key -> typed value, or text from a command line) applied."""
        return apply_settings(self.behaviour_defaults, settings or {}, "behaviour")

    def plan(self, prompt: PromptLike, settings: dict[str, Any] | None = None,
             target: torch.Tensor | None = None) -> LearnPlan:
        """What learning this request means, worked out once for every caller (`learn`, the app's
        job, which reuses a finished job's results by the slug): the parsed prompt, the config,
        the slug and the target. `target` (horizon + 1 one-hot latent states) replaces the prompt's
        decoded target, e.g. an expert's own posterior states; the prompt then only names the policy
        (and the target joins its slug)."""
        prompt = Prompt.parse(prompt)
        cfg = self.behaviour_config(settings)
        if target is None:
            return LearnPlan(prompt, cfg, self.policies.slug(prompt, cfg),
                             self._target(prompt, cfg.horizon + 1, cfg.use_aligner, cfg.target_samples))
        if target.shape != (want := (cfg.horizon + 1, self.wm.cfg.stoch, self.wm.cfg.classes)):
            raise PromptError(f"a target must have shape {want}, got {tuple(target.shape)}")
        return LearnPlan(prompt, cfg, self.policies.slug(prompt, cfg, target), target)

    def learn(self, prompt: PromptLike | LearnPlan, settings: dict[str, Any] | None = None,
              callback: Callable[[dict], None] | None = None, cancel: threading.Event | None = None,
              progress: bool = False, target: torch.Tensor | None = None) -> LearnedPolicy:
        """Learn a policy for the prompt in imagination, or return the finished one with the same
        slug (`reused`). `prompt` is a prompt, planned here with `settings` and `target` (see
        `plan`), or a plan already made, which carries both. `callback(dict)` gets progress;
        setting `cancel` checkpoints and raises LearningCancelled (rerun to resume)."""
        if isinstance(prompt, LearnPlan):
            if settings is not None or target is not None:
                raise ConfigError("a plan carries its settings and target: give them to plan(), not learn()")
            plan = prompt
        else:
            plan = self.plan(prompt, settings, target)
        cfg = plan.cfg
        if (done := self.policies.find(plan.slug)) is not None:
            return dataclasses.replace(done, reused=True)
        reward = make_reward(cfg.reward, self.wm, self.files, cfg.align_states)  # an oracle loads its heads here
        gen = torch.Generator().manual_seed(cfg.seed)
        starts = StartStates(self.wm, self.bundle, cfg.start, self.connector, self.aligner, self.vlm.embed_dim, gen)
        run_dir = self.policies.run_dir(plan.slug)
        earlier = read_meta(run_dir)
        learner = None
        if cfg.init == "generalist":  # refine the generalist on this target (the loaded actor is its copy's base)
            actor, found = self._load_generalist()
            learner = warm_started(actor.state_dict(), generalist_values(found.path))
        prior = self.files.load_bc_prior(self.wm) if cfg.bc_weight > 0 else None
        run = LearnRun(plan.target.to(self.device), starts, cfg, run_dir,
                       self.policy_meta(plan, earlier.created if earlier else None), reward, learner, prior)
        final = learn_policy(self.wm, run, callback=callback, cancel=cancel, progress=progress)
        return LearnedPolicy(final, run_dir)

    def policy_meta(self, plan: LearnPlan, created: float | None = None) -> PolicyMeta:
        """The meta a policy starts with (learn_policy adds its progress); one schema for all writers."""
        return PolicyMeta.start(plan.slug, plan.prompt, plan.cfg, self.body, self.wm_digest, self.vlm.name, created)

    def _load_generalist(self) -> tuple[Actor, LearnedPolicy]:
        if self._generalist is None:
            self._generalist = load_generalist(self.bundle, self.wm_digest, self.wm.cfg, self.device)
        return self._generalist

    def act(self, prompt: PromptLike) -> InstantPolicy:
        """Zero-shot: the bundle's generalist conditioned on the prompt's target, at once (no
        learning). Use it wherever a learned policy goes: imagine, rollout, alignment, evaluate."""
        prompt = Prompt.parse(prompt)
        actor, found = self._load_generalist()
        cfg = found.config
        target = self._target(prompt, cfg.horizon + 1, cfg.use_aligner, cfg.target_samples)
        meta = dataclasses.replace(found.meta, slug=f"instant-{self.policies.slug(prompt, cfg, None)}",
                                   prompt=prompt.name, prompt_kind=prompt.kind)
        return InstantPolicy(meta, BoundActor(actor, target_condition(target[None])).to(self.device), target)

    def load_policy(self, policy: str | LearnedPolicy | InstantPolicy) -> tuple[Actor, LearnedPolicy]:
        """The actor of a finished policy (by slug or handle) and its handle; checks it was learned
        on this world model."""
        if isinstance(policy, InstantPolicy):
            return policy.actor, policy
        found = self.policies.get(policy)
        return self.policies.actor(found, self.wm.cfg, self.device), found

    # ---------------------------------------------------------------- looking at a policy
    @torch.no_grad()
    def real_start(self, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent state (deter, one-hot stoch) of `batch` real reset frames of the body, seeds
        seed, seed + 1, ...: where an episode starts."""
        frames = []
        for i in range(seed, seed + batch):
            frame = self._reset_frames.get(i)
            if frame is None:  # a reset is deterministic in its seed: render it once
                frame = PixelEnv(self.body, seed=i).reset().image
                self._reset_frames.put(i, frame)
            frames.append(frame)
        images = torch.from_numpy(np.stack(frames)).to(self.device)
        cfg = self.wm.cfg
        return self.wm.obs_step(self.wm.initial_deter(batch, self.device),
                                torch.zeros(batch, cfg.stoch, cfg.classes, device=self.device),
                                torch.zeros(batch, cfg.action_dim, device=self.device), images)

    @torch.no_grad()
    def rollout(self, policy: str | LearnedPolicy, deter: torch.Tensor, stoch: torch.Tensor,
                steps: int) -> dict[str, torch.Tensor]:
        """The policy's mean actions in imagination from (deter, stoch): RSSM.imagine's states
        0..steps (the start first), on the prior's modes."""
        actor, _ = self.load_policy(policy)
        return self.wm.imagine(deter, stoch, lambda d, s: actor.act(feature(d, s)), steps, sample=False)

    @torch.no_grad()
    def imagined_return(self, policy: str | LearnedPolicy, task: str, episodes: int = 3, seed: int = 0,
                        steps: int = 500) -> float | None:
        """The task return the world model believes the policy gets: a whole episode imagined from
        the real reset frames of `evaluate`'s seeds, each state scored by the oracle reward head.
        Next to the real return it measures how far imagination and the simulator part (None when
        the bundle has no reward head for the task: no reward heads, or a held-out task)."""
        try:
            heads = self.files.load_reward_heads(self.wm)
        except BundleError:
            return None
        if task not in heads.tasks:
            return None
        traj = self.rollout(policy, *self.real_start(episodes, seed), steps - 1)
        # every state after the start
        rewards = heads(feature(traj["deter"][:, 1:], traj["stoch"][:, 1:]))[..., heads.column(task)]
        return round(float(rewards.sum(1).mean()), 1)

    def imagine(self, policy: str | LearnedPolicy, steps: int = 64, seed: int = 0) -> np.ndarray:
        """Decoded frames (steps, 64, 64, 3) of the policy acting in the world model from a real start;
        `steps` as everywhere (prompt.STEPS_HELP). For longer rollouts use `rollout`."""
        steps = check_steps(steps)
        torch.manual_seed(seed)
        states = self.rollout(policy, *self.real_start(1, seed), steps - 1)["stoch"]
        return self.decode(states[0])

    def alignment(self, prompt: PromptLike | None, policy: str | LearnedPolicy, batch: int = 16,
                  seed: int = 0) -> dict[str, Any]:
        """Mean similarity of the target's first b states at each offset of the policy's imagined
        window, and the chosen t_a; the policy's own target is used when prompt is None."""
        _, found = self.load_policy(policy)
        cfg = found.config
        if prompt is None:
            target = found.target if isinstance(found, InstantPolicy) else load_torch(found.target_file)
            target = target.to(self.device)
        else:
            target = self._target(Prompt.parse(prompt), cfg.horizon + 1, cfg.use_aligner, cfg.target_samples)
        torch.manual_seed(seed)
        states = self.rollout(found, *self.real_start(batch, seed), cfg.horizon)["stoch"]
        sim = similarity_matrix(cfg.reward, self.wm, states, target, states)
        scores = alignment_scores(sim, cfg.align_states).mean(0)
        return {"offsets": list(range(len(scores))), "similarity": [round(float(x), 5) for x in scores],
                "t_a": int(scores.argmax())}

    def evaluate(self, policy: str | LearnedPolicy, task: str | None = None, episodes: int = 1,
                 video: str | Path | None = None, seed: int = 0, max_steps: int | None = None,
                 keep_actions: bool = False) -> dict[str, Any]:
        """True return of the policy in the real simulator (from pixels), normalised where references exist."""
        actor, found = self.load_policy(policy)
        if task is None:  # a video prompt names no task in words: the body's first one
            meta = found.meta
            task = self.guess_task(Prompt.text(meta.prompt)) if meta.prompt_kind == "text" else self.tasks()[0]
        if task not in self.tasks():
            raise PromptError(f"unknown task {task!r} for {self.body}; valid: {', '.join(self.tasks())}")
        if not 1 <= int(episodes) <= 100:
            raise PromptError(f"episodes must be between 1 and 100, got {episodes}")
        return run_policy(self.wm, actor, task, int(episodes), seed, video, max_steps, keep_actions)

    def record(self, policy: str | LearnedPolicy, task: str | None = None, episodes: int = 3,
               seed: int = 1000) -> dict[str, Any]:
        """`evaluate` on whole episodes, kept in the policy's folder: the score as `RECORD_FILE` and
        episode 0 as `RECORD_VIDEO` (what the app shows for a policy, `genrl evaluate --record`)."""
        folder = self.policies.get(policy).path
        result = self.evaluate(policy, task, episodes, folder / RECORD_VIDEO, seed)
        write_record(folder, result, seed)
        return result

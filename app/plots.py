"""Matplotlib figures of a job: the alignment of the prompt with the policy's imagined rollout and
the reward curve of learning. Object-oriented API with the Agg canvas: safe in worker threads."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _figure() -> Figure:
    fig = Figure(figsize=(4.2, 2.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def alignment_figure(offsets: Sequence[int], similarity: Sequence[float], t_a: int | None) -> Figure:
    """Similarity of the target with the imagined rollout per time offset; the chosen offset t_a marked."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(list(offsets), list(similarity), marker="o", ms=3, color="#3366cc")
    if t_a is not None:
        ax.axvline(t_a, color="#dc3912", ls="--", label=f"t_a = {t_a}")
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel("offset (steps)")
    ax.set_ylabel("similarity")
    ax.set_title(" ", fontsize=10)  # room for the UI label drawn over the top-left corner
    ax.grid(alpha=0.3)
    return fig


def reward_figure(history: Sequence[Sequence[float]], updates: int | None = None) -> Figure:
    """Mean imagined reward per update while learning."""
    fig = _figure()
    ax = fig.add_subplot()
    if history:
        xs, ys = zip(*[(h[0], h[1]) for h in history], strict=True)
        ax.plot(xs, ys, color="#109618")
    if updates:
        ax.set_xlim(0, updates)
    ax.set_xlabel("update")
    ax.set_ylabel("reward")
    ax.set_title("learning: imagined reward", fontsize=10)
    ax.grid(alpha=0.3)
    return fig


def log_history(path: Path, max_points: int = 400) -> list[list[float]]:
    """[update, reward] points of a policy's training log (log.jsonl, one JSON record per logged
    update), thinned to at most `max_points`; [] when there is no log."""
    if not path.is_file():
        return []
    points = []
    for line in path.read_text().splitlines():
        record = json.loads(line) if line.strip() else {}
        if "step" in record and "reward" in record:
            points.append([int(record["step"]), float(record["reward"])])
    stride = -(-len(points) // max_points) if points else 1  # ceil: keep the curve's shape, bounded
    return points[::stride]


def save_png(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, format="png")
    tmp.replace(path)
    return path

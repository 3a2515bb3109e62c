"""Plot a practice run's real-simulator scores against env steps, beside DreamerV3's published
walker curves (docs/PRACTICE.md, the README's practice section).

    python benchmarks/practice_curve.py runs/practice_warm/practice.json --out docs/practice_curve.png

Our frames are agent steps at action repeat 2, so the x axis shows 2 x frames as env steps.
DreamerV3 (danijar/dreamerv3 scores/dmc_vision-dreamerv3.json.gz, mean of 10 seeds, nearest
logged step, normalised with GenRL's random/expert returns) learns online from scratch with a
~200M-parameter model; ours starts from the shipped bundle's world model and policies.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ACTION_REPEAT = 2
DREAMERV3 = {  # env steps -> normalised score
    "walker_walk": {100_000: 0.61, 200_000: 0.86, 300_000: 0.96, 500_000: 0.98},
    "walker_run": {100_000: 0.25, 200_000: 0.49, 300_000: 0.63, 500_000: 0.79},
}
COLOURS = {"walker_stand": "#109618", "walker_walk": "#3366cc", "walker_run": "#dc3912"}


def plot(state: dict, out: Path) -> None:
    fig = Figure(figsize=(8.4, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    curve = state["curve"]
    specs = sorted({spec for row in curve for spec in row["scores"]})
    for spec in specs:
        task = spec.split("@")[-1].split(":")[-1]
        rows = [(row["frames"] * ACTION_REPEAT, row["scores"][spec]["normalised"]) for row in curve
                if spec in row["scores"] and row["scores"][spec]["normalised"] is not None]
        if rows:
            oracle = spec.startswith("oracle:")
            ax.plot(*zip(*rows, strict=True), marker="o", ms=3, color=COLOURS.get(task, "#777777"),
                    ls="-" if oracle else ":", label=spec if not oracle else f"{spec} (true reward)")
    for task, points in DREAMERV3.items():
        ax.plot(list(points), list(points.values()), color=COLOURS[task], ls="--", alpha=0.5,
                label=f"DreamerV3 {task} (from scratch)")
    ax.set_xlabel("env steps collected by practice")
    ax.set_ylabel("normalised score")
    ax.set_ylim(-0.1, 1.1)
    ax.grid(alpha=0.3)
    fig.legend(loc="outside right upper", fontsize=7)
    fig.savefig(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("state", type=Path, help="a practice run's practice.json")
    parser.add_argument("--out", type=Path, default=Path("docs/practice_curve.png"), help="PNG to write")
    args = parser.parse_args()
    plot(json.loads(args.state.read_text()), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

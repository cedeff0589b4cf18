"""PNG plots written into the run directory (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path

from atlasrl.up.progress import CurvePoint


def plot_learning(points: list[CurvePoint], out: Path, *, title: str = "", baseline: float | None = None,
                  final: float | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [p.env_steps for p in points]
    ax1.plot(steps, [p.success_rate for p in points], marker=".", label="training success (window)")
    if baseline is not None:
        ax1.axhline(baseline, color="grey", ls="--", label=f"eval before training {baseline:.2f}")
    if final is not None:
        ax1.axhline(final, color="green", ls="--", label=f"eval after training {final:.2f}")
    ax1.set(xlabel="env steps", ylabel="success rate", ylim=(-0.02, 1.02), title="success rate")
    ax1.legend(loc="lower right", fontsize=8)
    ax2.plot(steps, [p.return_mean for p in points], marker=".", color="tab:orange", label="mean episode return")
    ax2.set(xlabel="env steps", ylabel="return", title="reward")
    if any(p.loss == p.loss for p in points):  # some non-nan loss
        twin = ax2.twinx()
        twin.plot(steps, [p.loss for p in points], color="tab:red", alpha=0.5, label="learner loss")
        twin.set_ylabel("loss")
    ax2.legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_comparison(curves: dict[str, list[list[CurvePoint]]], out: Path, *, target: float = 0.8) -> Path:
    """One line per (variant, seed): success rate against env steps (memory ablation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for color, (variant, runs) in zip(colors, curves.items()):
        for i, points in enumerate(runs):
            ax.plot([p.env_steps for p in points], [p.success_rate for p in points], color=color, alpha=0.8,
                    label=variant if i == 0 else None)
    ax.axhline(target, color="grey", ls="--", lw=1)
    ax.set(xlabel="env steps", ylabel="training success rate", ylim=(-0.02, 1.02))
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out

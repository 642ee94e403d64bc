"""Pictures a person would rather look at than read."""

from __future__ import annotations

from pathlib import Path

from rewardkit.evaluation.metrics import Reliability


def plot_reliability(rel: Reliability, path: str | Path, title: str = "") -> Path:
    """Reliability diagram: accuracy against confidence per bin, with the diagonal.

    Bar widths show where the pairs are; the gap to the diagonal is what ECE averages.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(4.8, 5.6), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0.5, 1.0], [0.5, 1.0], linestyle=":", color="grey", label="perfect calibration")
    ax.plot(rel.confidence, rel.accuracy, marker="o", label="model")
    ax.set(ylabel="accuracy", ylim=(0, 1.02))
    ax.set_title(f"{title}\nECE {rel.ece:.3f}" if title else f"reliability (ECE {rel.ece:.3f})", fontsize=9,
                 parse_math=False)  # the title holds file names and refs: no mathtext
    ax.legend(loc="lower right")
    ax_n.bar(rel.confidence, rel.count, width=0.04, color="tab:blue", alpha=0.6)
    ax_n.set(xlabel="confidence max(σ(Δr), 1-σ(Δr))", ylabel="pairs", xlim=(0.48, 1.02))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

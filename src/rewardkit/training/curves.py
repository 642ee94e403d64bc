"""Training curves: logged points, written as CSV and a PNG plot next to the run."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

COLUMNS = ("step", "epoch", "loss", "accuracy", "learning_rate")


@dataclass
class Curves:
    """Loss, training pairwise accuracy and learning rate per logged optimizer step.

    Attributes:
        rows: The logged points.
        loss_label: What the loss is, for the plot (``"Bradley-Terry loss"``, ``"MSE loss"``).
    """

    rows: list[dict[str, float]] = field(default_factory=list)
    loss_label: str = "Bradley-Terry loss"

    @classmethod
    def from_rows(cls, rows: list[dict[str, float]], loss_label: str = "Bradley-Terry loss") -> Curves:
        """Rebuild from rows saved in a checkpoint."""
        return cls([dict(r) for r in rows], loss_label)

    def add(self, step: int, epoch: float, loss: float, accuracy: float, learning_rate: float) -> None:
        """Append one point (window means since the previous point)."""
        self.rows.append(dict(zip(COLUMNS, (step, round(epoch, 4), loss, accuracy, learning_rate), strict=True)))

    def write(self, folder: Path) -> tuple[Path, Path]:
        """Write ``curves.csv`` and ``curves.png`` into ``folder``; returns both paths."""
        csv_path, png_path = folder / "curves.csv", folder / "curves.png"
        with csv_path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(self.rows)
        self.plot(png_path)
        return csv_path, png_path

    def plot(self, path: Path) -> None:
        """Loss (left) and training accuracy (right) against optimizer step."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [r["step"] for r in self.rows]
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
        ax_loss.plot(steps, [r["loss"] for r in self.rows], marker=".")
        ax_loss.set(xlabel="optimizer step", ylabel=self.loss_label, title="training loss")
        ax_acc.plot(steps, [r["accuracy"] for r in self.rows], marker=".", color="tab:green")
        ax_acc.axhline(0.5, color="grey", linestyle=":", linewidth=1)
        ax_acc.set(xlabel="optimizer step", ylabel="pairwise accuracy", title="training accuracy", ylim=(0, 1))
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

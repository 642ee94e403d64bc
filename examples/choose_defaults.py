"""Choose the main job's hyperparameters on the validation split only (never the test split).

Trains on the training splits of hh-rlhf harmless and qa-feedback with the main job's settings
plus the given overrides, scores the validation split, prints one JSON line and appends it to
``choose_defaults.jsonl``:

    PYTHONPATH=src .venv/bin/python examples/choose_defaults.py len256 '{"max_length": 256, "learning_rate": 5e-5}'
"""

import json
import sys
from pathlib import Path

from rewardkit.data import load_pairs
from rewardkit.evaluation import evaluate_model
from rewardkit.training import RewardConfig, RewardTrainer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main(name: str, overrides: dict) -> None:
    """Train with ``overrides`` on the training split; print and append the validation accuracy."""
    config = RewardConfig(bf16=True, num_threads=2, batch_size=8, **overrides)
    data = load_pairs([DATA / "hh-rlhf-harmless-base-test.jsonl.gz", DATA / "qa-feedback-dev.json.gz"])
    parts = data.split(config.split, config.seed)
    result = RewardTrainer(config).train(parts["train"].pairs, f"runs/choose-defaults/{name}", progress=False)
    report = evaluate_model(result.model, parts["validation"], max_length=config.max_length, progress=False)
    metrics = report.metrics("validation")
    row = {"name": name, "overrides": overrides, "train_pairs": result.n_pairs, "train_seconds": round(result.seconds),
           **{k: v for k, v in metrics.items() if k.endswith("accuracy") or "accuracy_ci" in k}}
    print(json.dumps(row))
    with open("choose_defaults.jsonl", "a") as out:
        out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})

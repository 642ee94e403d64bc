"""Train a text reward model, evaluate it on its held-out splits, and commit it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardkit.api.checks import DataSource, check_output_path, source_names
from rewardkit.data import chat_template_renderer, fingerprint, load_pairs
from rewardkit.training.config import RewardConfig

if TYPE_CHECKING:
    from rewardkit.evaluation import EvalReport
    from rewardkit.store import Commit, Repository
    from rewardkit.training import TrainResult

DEFAULT_BACKBONE_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # what models.default_backbone() ships


@dataclass
class TrainRun:
    """The outcome of :func:`train`.

    Attributes:
        result: What the trainer did (pairs, truncations, speed, curves).
        evaluations: Reports by name: ``"validation"`` and ``"test"`` (the held-out splits of
            the training data) and one per ``eval_data`` source (its file name).
        model_dir: The saved model folder (loads with ``from_pretrained``).
        commit: The commit, when one was asked for; its metrics hold every evaluation.
        n_ties_dropped: Tied pairs of the training split, left out of training.
        n_identical: Of those ties, pairs whose chosen and rejected texts are identical.
        n_empty: Training pairs with an empty chosen or rejected response (kept).
        is_main_process: False in the other processes of a multi-process run, which neither
            save, evaluate nor commit.
    """

    result: TrainResult
    evaluations: dict[str, EvalReport]
    model_dir: Path
    commit: Commit | None
    n_ties_dropped: int
    n_identical: int = 0
    n_empty: int = 0
    is_main_process: bool = True


def train(
    data: DataSource,
    config: RewardConfig | None = None,
    *,
    format: str | None = None,  # noqa: A002 (the data format, as in --format)
    eval_data: Sequence[str | Path] = (),
    output_dir: str | Path = "runs/latest",
    commit_message: str | None = None,
    repo: Repository | None = None,
    resume_from: str | Path | None = None,
    progress: bool = True,
) -> TrainRun:
    """Train a text reward model on the training split of ``data``; evaluate it; optionally commit it.

    Each source is split by prompt group into train/validation/test (``config.split``,
    seeded by ``config.seed``); ties are dropped from training and counted. After training
    the model is evaluated on the validation and test splits and on every ``eval_data``
    source (all of it, format detected), and the commit records all of those metrics, and
    in ``params["fingerprints"]`` the fingerprint of the training pairs and of every data set
    evaluated (``"train"``, ``"validation"``, ``"test"``, each ``eval_data`` file name). The
    commit also stores a probe set for ``rewardkit diff``: the first 256 pairs of the test
    split (else of the validation split) and the model's rewards on them, taken from the
    evaluation (nothing is scored twice), named in ``params["probe"]`` (see
    :mod:`rewardkit.store.probe`).

    All data, ``eval_data`` included, is read and checked before torch and the backbone's
    weights are loaded, so a data error comes back in about the time Python takes to start;
    a chat template needs only the tokenizer.

    Raises:
        DataError: The data cannot be read or holds no training pair.
        ModelError: The backbone cannot be loaded.
        ConfigError: A hyperparameter is out of range.
        OutputError: ``output_dir`` (or a folder above it) is a file.
        StoreError: ``commit_message`` is given and the repository refuses the commit.
    """
    config = config or RewardConfig()
    check_output_path(output_dir, "output folder", "--output-dir", folder=True)
    if commit_message is not None and repo is None:
        from rewardkit.store import Repository

        repo = Repository.discover()  # fail before training, not after

    def tokenizer() -> Any:
        from rewardkit.models.text import load_tokenizer

        return load_tokenizer(config.base_model)

    render = chat_template_renderer(tokenizer)
    parts = load_pairs(data, format, render_chat=render).split(config.split, config.seed)
    held_out = {name: parts[name] for name in ("validation", "test") if parts[name].pairs}
    held_out |= {Path(d).name: load_pairs(d, render_chat=render) for d in eval_data}
    train_split = parts["train"].first_per_source(config.limit)
    train_pairs = train_split.pairs
    counts = {"n_ties_dropped": len(parts["train"].ties), "n_identical": parts["train"].n_identical,
              "n_empty": train_split.n_empty}

    # torch and the weights are loaded only once the data is known to be good
    from rewardkit.evaluation import evaluate_with_rewards
    from rewardkit.store.probe import make_probe
    from rewardkit.training import RewardTrainer

    trainer = RewardTrainer(config)
    result = trainer.train(train_pairs, output_dir, resume_from=resume_from, progress=progress)
    model_dir = Path(output_dir) / "model"
    if not trainer.accelerator.is_main_process:  # under `accelerate launch`, one process saves and commits
        return TrainRun(result, {}, model_dir, None, **counts, is_main_process=False)
    result.model.tokenizer.model_max_length = config.max_length  # so a checkout scores as trained
    result.model.save(model_dir)
    evaluated = {name: evaluate_with_rewards(result.model, dataset, max_length=config.max_length, progress=progress)
                 for name, dataset in held_out.items()}
    reports = {name: report for name, (report, _) in evaluated.items()}

    commit = None
    if commit_message is not None:
        metrics = result.metrics()
        for name, report in reports.items():
            metrics |= report.metrics(name)
        fingerprints = {"train": fingerprint(train_pairs)} | {name: d.fingerprint for name, d in held_out.items()}
        params = {"config": config.to_dict(), "data": source_names(data), "eval_data": source_names(eval_data),
                  "formats": parts["train"].formats, "fingerprints": fingerprints}
        probe_objects = []
        split = next((name for name in ("test", "validation") if name in held_out), None)
        if split is not None:  # the probe set `diff` compares versions on: the split's first pairs
            probe = make_probe(held_out[split].pairs, evaluated[split][1])  # rewards the evaluation computed
            params["probe"] = probe.param() | {"split": split}
            probe_objects = [probe.pairs_bytes(), probe.rewards]
        commit = repo.commit_dir(
            model_dir, commit_message,
            params=params,
            extra_objects=probe_objects,
            metrics=metrics,
            data_fingerprint=fingerprints["train"],
            backbone=config.base_model or DEFAULT_BACKBONE_NAME,
        )
    return TrainRun(result, reports, model_dir, commit, **counts)

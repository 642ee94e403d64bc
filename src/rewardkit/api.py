"""The Python API: one function per main job, each a short composition of the core packages.

The CLI calls exactly these functions and only renders what they return.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rewardkit.data import PreferencePair, load_pairs
from rewardkit.evaluation import EvalReport, evaluate_model
from rewardkit.models import TextRewardModel
from rewardkit.store import Commit, Repository
from rewardkit.training import RewardConfig, RewardTrainer, TrainResult

DataSource = str | Path | Sequence[str | Path]
DEFAULT_BACKBONE_NAME = "sentence-transformers/all-MiniLM-L6-v2"
SPLITS = ("train", "validation", "test", "all")


@dataclass
class TrainRun:
    """The outcome of :func:`train`.

    Attributes:
        result: What the trainer did (pairs, truncations, speed, curves).
        validation: Evaluation on the held-out validation split.
        model_dir: The saved model folder (loads with ``from_pretrained``).
        commit: The commit, when one was asked for.
        n_ties_dropped: Tied pairs of the training split, left out of training.
        is_main_process: False in the other processes of a multi-process run, which neither
            save, evaluate nor commit.
    """

    result: TrainResult
    validation: EvalReport | None
    model_dir: Path
    commit: Commit | None
    n_ties_dropped: int
    is_main_process: bool = True


def train(
    data: DataSource,
    config: RewardConfig | None = None,
    *,
    format: str | None = None,  # noqa: A002 (the data format, as in --format)
    output_dir: str | Path = "runs/latest",
    commit_message: str | None = None,
    repo: Repository | None = None,
    resume_from: str | Path | None = None,
    progress: bool = True,
) -> TrainRun:
    """Train a text reward model on the training split of ``data``; optionally commit it.

    Each source is split by prompt group into train/validation/test (``config.split``,
    seeded by ``config.seed``); ties are dropped from training and counted.

    Raises:
        DataError: The data cannot be read or holds no training pair.
        ModelError: The backbone cannot be loaded.
        StoreError: ``commit_message`` is given and the repository refuses the commit.
    """
    config = config or RewardConfig()
    if commit_message is not None and repo is None:
        repo = Repository.discover()  # fail before training, not after
    trainer = RewardTrainer(config)
    parts = load_pairs(data, format, render_chat=chat_renderer(trainer.model)).split(config.split, config.seed)
    train_pairs = _first_per_source(parts["train"].pairs, config.limit)

    result = trainer.train(train_pairs, output_dir, resume_from=resume_from, progress=progress)
    model_dir = Path(output_dir) / "model"
    if not trainer.accelerator.is_main_process:  # under `accelerate launch`, one process saves and commits
        return TrainRun(result, None, model_dir, None, len(parts["train"].ties), is_main_process=False)
    result.model.save(model_dir)
    validation = parts["validation"]
    report = None
    if validation.pairs:
        report = evaluate_model(result.model, validation, max_length=config.max_length, progress=progress)

    commit = None
    if commit_message is not None:
        metrics = result.metrics() | (report.metrics("validation") if report else {})
        commit = repo.commit_dir(
            model_dir, commit_message,
            params={"config": config.to_dict(), "data": _names(data), "formats": parts["train"].formats},
            metrics=metrics,
            data_fingerprint=parts["train"].fingerprint,
            backbone=config.base_model or DEFAULT_BACKBONE_NAME,
        )
    return TrainRun(result, report, model_dir, commit, len(parts["train"].ties))


def evaluate(
    model: str | Path | TextRewardModel,
    data: DataSource,
    *,
    format: str | None = None,  # noqa: A002
    split: str = "all",
    repo: Repository | None = None,
    max_length: int | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> EvalReport:
    """Evaluate a reward model on preference data.

    Args:
        model: A model folder, a ref of ``repo`` (``main``, ``main~1``, an id prefix) or a
            loaded model.
        data: Files or dataset ids.
        format: Data format; detected when ``None``.
        split: ``"all"``, or ``"train"``/``"validation"``/``"test"`` to recompute the split a
            stored model was trained with (its seed and fractions come from the commit).
        repo: Repository for refs; discovered when needed.
        max_length: Token budget per text; default the model's training ``max_length``, else 512.
        batch_size: Texts per forward pass.
        progress: Show progress bars.

    Raises:
        DataError: Unknown split, unreadable data, or no pairs in the chosen split.
        RefError: ``model`` is neither a folder nor a known ref.
    """
    from rewardkit.errors import DataError

    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    loaded, config = load_model(model, repo)
    dataset = load_pairs(data, format, render_chat=chat_renderer(loaded))
    if split != "all":
        cfg = config or RewardConfig()
        dataset = dataset.split(cfg.split, cfg.seed)[split]
        if not dataset.pairs:
            raise DataError(f"the {split} split of {_names(data)} holds no preference pair")
    budget = max_length or (config.max_length if config else 512)
    return evaluate_model(loaded, dataset, max_length=budget, batch_size=batch_size, progress=progress)


def score(
    model: str | Path | TextRewardModel,
    responses: Sequence[str],
    prompts: Sequence[str] | None = None,
    *,
    repo: Repository | None = None,
    max_length: int | None = None,
) -> list[float]:
    """Rewards of ``prompt + response`` texts (prompts default to empty)."""
    loaded, config = load_model(model, repo)
    budget = max_length or (config.max_length if config else 512)
    return loaded.score(prompts or [""] * len(responses), responses, max_length=budget)


def score_pairs(model: str | Path | TextRewardModel, pairs: Sequence[PreferencePair],
                *, repo: Repository | None = None) -> list[tuple[float, float]]:
    """``(r_chosen, r_rejected)`` for each pair."""
    loaded, config = load_model(model, repo)
    budget = config.max_length if config else 512
    chosen = loaded.score([p.prompt for p in pairs], [p.chosen for p in pairs], max_length=budget)
    rejected = loaded.score([p.prompt for p in pairs], [p.rejected for p in pairs], max_length=budget)
    return list(zip(chosen, rejected, strict=True))


def load_model(
    model: str | Path | TextRewardModel, repo: Repository | None = None
) -> tuple[TextRewardModel, RewardConfig | None]:
    """Load a model given as an object, a folder or a ref; with its training config if stored.

    Raises:
        RefError: Not a folder and not a ref of the repository.
        ModelError: The folder does not hold a loadable model.
    """
    if isinstance(model, TextRewardModel):
        return model, None
    if Path(model).is_dir():
        return TextRewardModel.load(model), None
    repo = repo or Repository.discover()
    commit = repo.resolve(str(model))
    with tempfile.TemporaryDirectory(prefix="rewardkit-") as tmp:
        loaded = TextRewardModel.load(repo.checkout(commit.id, Path(tmp) / "model"))
    stored = (commit.params or {}).get("config")
    return loaded, RewardConfig.from_dict(stored) if stored else None


def chat_renderer(model: TextRewardModel):  # noqa: ANN201 (Callable | None)
    """The tokenizer's chat template as a renderer for conversational data, if it has one."""
    tokenizer = model.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        return None
    return lambda messages: tokenizer.apply_chat_template(messages, tokenize=False)


def _first_per_source(pairs: list[PreferencePair], limit: int | None) -> list[PreferencePair]:
    if limit is None:
        return pairs
    taken: dict[str, int] = {}
    kept = []
    for pair in pairs:
        if taken.get(pair.source, 0) < limit:
            taken[pair.source] = taken.get(pair.source, 0) + 1
            kept.append(pair)
    return kept


def _names(data: DataSource) -> list[str]:
    return [str(data)] if isinstance(data, str | Path) else [str(d) for d in data]


__all__ = [
    "TrainRun",
    "evaluate",
    "load_model",
    "score",
    "score_pairs",
    "train",
]

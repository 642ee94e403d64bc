"""The Python API: one function per main job, each a short composition of the core packages.

The CLI calls exactly these functions and only renders what they return.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rewardkit.data import PreferenceDataset, fingerprint, load_pairs
from rewardkit.data.split import SPLITS
from rewardkit.errors import DataError
from rewardkit.evaluation import EvalReport, evaluate_model, reward_table
from rewardkit.models import TextRewardModel
from rewardkit.store import Commit, Repository
from rewardkit.store.modeldir import map_like_weights_file
from rewardkit.training import RewardConfig, RewardTrainer, TrainResult

DataSource = str | Path | Sequence[str | Path]
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
        is_main_process: False in the other processes of a multi-process run, which neither
            save, evaluate nor commit.
    """

    result: TrainResult
    evaluations: dict[str, EvalReport]
    model_dir: Path
    commit: Commit | None
    n_ties_dropped: int
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
    source (all of it, format detected), and the commit records all of those metrics.

    Raises:
        DataError: The data cannot be read or holds no training pair.
        ModelError: The backbone cannot be loaded.
        ConfigError: A hyperparameter is out of range.
        StoreError: ``commit_message`` is given and the repository refuses the commit.
    """
    config = config or RewardConfig()
    if commit_message is not None and repo is None:
        repo = Repository.discover()  # fail before training, not after
    trainer = RewardTrainer(config)
    render = chat_renderer(trainer.model)
    parts = load_pairs(data, format, render_chat=render).split(config.split, config.seed)
    held_out = {name: parts[name] for name in ("validation", "test") if parts[name].pairs}
    held_out |= {Path(d).name: load_pairs(d, render_chat=render) for d in eval_data}  # read before training
    train_pairs = parts["train"].first_per_source(config.limit).pairs

    result = trainer.train(train_pairs, output_dir, resume_from=resume_from, progress=progress)
    model_dir = Path(output_dir) / "model"
    n_ties = len(parts["train"].ties)
    if not trainer.accelerator.is_main_process:  # under `accelerate launch`, one process saves and commits
        return TrainRun(result, {}, model_dir, None, n_ties, is_main_process=False)
    result.model.tokenizer.model_max_length = config.max_length  # so a checkout scores as trained
    result.model.save(model_dir)
    reports = {name: evaluate_model(result.model, dataset, max_length=config.max_length, progress=progress)
               for name, dataset in held_out.items()}

    commit = None
    if commit_message is not None:
        metrics = result.metrics()
        for name, report in reports.items():
            metrics |= report.metrics(name)
        commit = repo.commit_dir(
            model_dir, commit_message,
            params={"config": config.to_dict(), "data": _names(data), "eval_data": _names(eval_data),
                    "formats": parts["train"].formats},
            metrics=metrics,
            data_fingerprint=fingerprint(train_pairs),
            backbone=config.base_model or DEFAULT_BACKBONE_NAME,
        )
    return TrainRun(result, reports, model_dir, commit, n_ties)


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
        max_length: Token budget per text; default the model's training ``max_length``.
        batch_size: Texts per forward pass.
        progress: Show progress bars.

    Raises:
        DataError: Unknown split, a split asked of a model with no stored training config,
            unreadable data, or no pairs in the chosen split.
        RefError: ``model`` is neither a folder nor a known ref.
    """
    if split not in (*SPLITS, "all"):
        raise DataError(f"unknown split {split!r}: expected one of {', '.join((*SPLITS, 'all'))}")
    loaded, config = load_model(model, repo)
    dataset = load_pairs(data, format, render_chat=chat_renderer(loaded))
    if split != "all":
        if config is None:
            raise DataError(f"--split {split} needs the seed and fractions the model was trained with, and "
                            f"{model} has none stored: give a ref of the repository, or --split all")
        dataset = dataset.split(config.split, config.seed)[split]
        if not dataset.pairs:
            raise DataError(f"the {split} split of {', '.join(_names(data))} holds no preference pair")
    return evaluate_model(loaded, dataset, max_length=max_length or loaded.max_length, batch_size=batch_size,
                          progress=progress)


def score(
    model: str | Path | TextRewardModel,
    responses: Sequence[str],
    prompts: Sequence[str] | None = None,
    *,
    repo: Repository | None = None,
    max_length: int | None = None,
) -> list[float]:
    """Rewards of the texts ``prompt + response`` (prompts default to empty), in input order."""
    loaded, _ = load_model(model, repo)
    return loaded.score(prompts or [""] * len(responses), responses, max_length=max_length or loaded.max_length)


def score_data(
    model: str | Path | TextRewardModel,
    data: DataSource,
    *,
    format: str | None = None,  # noqa: A002
    repo: Repository | None = None,
) -> tuple[PreferenceDataset, list[tuple[float, float]]]:
    """``(r_chosen, r_rejected)`` for every pair and tie of ``data``, pairs first, then ties."""
    loaded, _ = load_model(model, repo)
    dataset = load_pairs(data, format, render_chat=chat_renderer(loaded))
    items = dataset.pairs + dataset.ties
    reward_of = reward_table(loaded, items, max_length=loaded.max_length)
    return dataset, [(reward_of[(p.prompt, p.chosen)], reward_of[(p.prompt, p.rejected)]) for p in items]


def load_model(
    model: str | Path | TextRewardModel, repo: Repository | None = None
) -> tuple[TextRewardModel, RewardConfig | None]:
    """Load a model given as an object, a folder or a ref; with its training config if stored.

    A ref loads its tensors straight from the repository's objects (re-hashed as read);
    only the small files (config, tokenizer) pass through a temporary folder, so no copy
    of the weights is ever written.

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
    # straight from the objects (verified), laid out as a checkout's weights file maps, but in memory
    state_dict = map_like_weights_file(repo.load_tensors(commit.id))
    with tempfile.TemporaryDirectory(prefix="rewardkit-") as tmp:  # config and tokenizer files only
        folder = repo.checkout(commit.id, Path(tmp) / "model", weights=False)
        loaded = TextRewardModel.load(folder, state_dict=state_dict)
    stored = (commit.params or {}).get("config")
    return loaded, RewardConfig.from_dict(stored) if stored else None


def chat_renderer(model: TextRewardModel):  # noqa: ANN201 (Callable | None)
    """The tokenizer's chat template as a renderer for conversational data, if it has one."""
    tokenizer = model.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        return None
    return lambda messages: tokenizer.apply_chat_template(messages, tokenize=False)


def _names(data: DataSource) -> list[str]:
    return [str(data)] if isinstance(data, str | Path) else [str(d) for d in data]


__all__ = [
    "TrainRun",
    "evaluate",
    "load_model",
    "score",
    "score_data",
    "train",
]

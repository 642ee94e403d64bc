"""The Python API: one function per main job, each a short composition of the core packages.

The CLI calls exactly these functions and only renders what they return.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from rewardkit.data import PreferenceDataset, chat_template_renderer, fingerprint, load_pairs
from rewardkit.data.split import SPLITS
from rewardkit.errors import DataError
from rewardkit.evaluation import EvalReport, evaluate_model, reward_table
from rewardkit.models import TextRewardModel
from rewardkit.models.text import load_tokenizer
from rewardkit.store import Commit, Repository
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
    evaluated (``"train"``, ``"validation"``, ``"test"``, each ``eval_data`` file name).

    All data, ``eval_data`` included, is read and checked before the backbone's weights are
    loaded, so a data error comes back in about the time Python takes to start; a chat
    template needs only the tokenizer.

    Raises:
        DataError: The data cannot be read or holds no training pair.
        ModelError: The backbone cannot be loaded.
        ConfigError: A hyperparameter is out of range.
        StoreError: ``commit_message`` is given and the repository refuses the commit.
    """
    config = config or RewardConfig()
    if commit_message is not None and repo is None:
        repo = Repository.discover()  # fail before training, not after
    render = chat_template_renderer(lambda: load_tokenizer(config.base_model))
    parts = load_pairs(data, format, render_chat=render).split(config.split, config.seed)
    held_out = {name: parts[name] for name in ("validation", "test") if parts[name].pairs}
    held_out |= {Path(d).name: load_pairs(d, render_chat=render) for d in eval_data}
    train_split = parts["train"].first_per_source(config.limit)
    train_pairs = train_split.pairs
    counts = {"n_ties_dropped": len(parts["train"].ties), "n_identical": parts["train"].n_identical,
              "n_empty": train_split.n_empty}

    trainer = RewardTrainer(config)  # loads the weights: only once the data is known to be good
    result = trainer.train(train_pairs, output_dir, resume_from=resume_from, progress=progress)
    model_dir = Path(output_dir) / "model"
    if not trainer.accelerator.is_main_process:  # under `accelerate launch`, one process saves and commits
        return TrainRun(result, {}, model_dir, None, **counts, is_main_process=False)
    result.model.tokenizer.model_max_length = config.max_length  # so a checkout scores as trained
    result.model.save(model_dir)
    reports = {name: evaluate_model(result.model, dataset, max_length=config.max_length, progress=progress)
               for name, dataset in held_out.items()}

    commit = None
    if commit_message is not None:
        metrics = result.metrics()
        for name, report in reports.items():
            metrics |= report.metrics(name)
        fingerprints = {"train": fingerprint(train_pairs)} | {name: d.fingerprint for name, d in held_out.items()}
        commit = repo.commit_dir(
            model_dir, commit_message,
            params={"config": config.to_dict(), "data": _names(data), "eval_data": _names(eval_data),
                    "formats": parts["train"].formats, "fingerprints": fingerprints},
            metrics=metrics,
            data_fingerprint=fingerprints["train"],
            backbone=config.base_model or DEFAULT_BACKBONE_NAME,
        )
    return TrainRun(result, reports, model_dir, commit, **counts)


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
    with open_model(model, repo) as source:
        if split != "all" and source.config is None:
            raise DataError(f"--split {split} needs the seed and fractions the model was trained with, and "
                            f"{model} has none stored: give a ref of the repository, or --split all")
        dataset = load_pairs(data, format, render_chat=chat_template_renderer(source.tokenizer))
        if split != "all":
            dataset = dataset.split(source.config.split, source.config.seed)[split]
            if not dataset.pairs:
                raise DataError(f"the {split} split of {', '.join(_names(data))} holds no preference pair")
        loaded = source.load()  # the weights, once the data is known to be good
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
    """``(r_chosen, r_rejected)`` for every pair and tie of ``data``, pairs first, then ties.

    The data is read and checked before the model's weights are loaded.
    """
    with open_model(model, repo) as source:
        dataset = load_pairs(data, format, render_chat=chat_template_renderer(source.tokenizer))
        loaded = source.load()
    items = dataset.pairs + dataset.ties
    reward_of = reward_table(loaded, items, max_length=loaded.max_length)
    return dataset, [(reward_of[(p.prompt, p.chosen)], reward_of[(p.prompt, p.rejected)]) for p in items]


def load_model(
    model: str | Path | TextRewardModel, repo: Repository | None = None
) -> tuple[TextRewardModel, RewardConfig | None]:
    """Load a model given as an object, a folder or a ref; with its training config if stored.

    Raises:
        RefError: Not a folder and not a ref of the repository.
        ModelError: The folder does not hold a loadable model.
    """
    with open_model(model, repo) as source:
        return source.load(), source.config


class ModelSource:
    """A model given as an object, a folder or a commit, opened in steps: tokenizer first, weights last.

    Made by :func:`open_model`. A commit is checked out into a temporary folder on first need.

    Attributes:
        config: The training config stored with a commit, else None.
    """

    def __init__(self, model: TextRewardModel | Path | Commit, repo: Repository | None, scratch: Path) -> None:
        """Wrap a loaded model, a model folder, or a commit of ``repo`` (checked out under ``scratch``)."""
        self._model, self._repo, self._scratch = model, repo, scratch
        stored = (model.params or {}).get("config") if isinstance(model, Commit) else None
        self.config = RewardConfig.from_dict(stored) if stored else None

    @cached_property
    def folder(self) -> Path:
        """The model folder (a commit is checked out on first use)."""
        if isinstance(self._model, Commit):
            return self._repo.checkout(self._model.id, self._scratch / "model")
        return Path(self._model)

    def tokenizer(self) -> Any:
        """The tokenizer alone, without loading any weights."""
        if isinstance(self._model, TextRewardModel):
            return self._model.tokenizer
        return load_tokenizer(self.folder)

    def load(self) -> TextRewardModel:
        """The whole model, weights included."""
        return self._model if isinstance(self._model, TextRewardModel) else TextRewardModel.load(self.folder)


@contextmanager
def open_model(model: str | Path | TextRewardModel, repo: Repository | None = None) -> Iterator[ModelSource]:
    """Resolve a model given as an object, a folder or a ref, without loading it (see :class:`ModelSource`).

    Raises:
        RefError: Not a folder and not a ref of the repository.
    """
    with tempfile.TemporaryDirectory(prefix="rewardkit-") as scratch:
        if isinstance(model, TextRewardModel) or Path(model).is_dir():
            yield ModelSource(model if isinstance(model, TextRewardModel) else Path(model), None, Path(scratch))
            return
        repo = repo or Repository.discover()
        yield ModelSource(repo.resolve(str(model)), repo, Path(scratch))


def _names(data: DataSource) -> list[str]:
    return [str(data)] if isinstance(data, str | Path) else [str(d) for d in data]


__all__ = [
    "ModelSource",
    "TrainRun",
    "evaluate",
    "load_model",
    "open_model",
    "score",
    "score_data",
    "train",
]

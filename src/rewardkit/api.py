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
from rewardkit.errors import ConfigError, DataError, ModelError, OutputError
from rewardkit.evaluation import EvalReport, evaluate_model, plot_reliability, reward_table
from rewardkit.models import TextRewardModel
from rewardkit.models.reward_head import check_reward_model_dir
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
        OutputError: ``output_dir`` (or a folder above it) is a file.
        StoreError: ``commit_message`` is given and the repository refuses the commit.
    """
    config = config or RewardConfig()
    _check_output_path(output_dir, "output folder", "--output-dir", folder=True)
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


def commit(model_dir: str | Path, message: str, *, repo: Repository | None = None, branch: str = "main") -> Commit:
    """Commit a saved text reward model folder on ``branch``.

    The folder must hold a one-output sequence-classification model (``config.json`` and
    ``model.safetensors``, see :func:`rewardkit.models.reward_head.check_reward_model_dir`),
    so that every stored version scores texts; nothing is written when it does not.

    Raises:
        ModelError: The folder is not such a model; the message says why.
        StoreError: The repository refuses the commit (empty message, bad branch name).
    """
    check_reward_model_dir(model_dir)
    return (repo or Repository.discover()).commit_dir(model_dir, message, branch=branch)


def evaluate(
    model: str | Path | TextRewardModel,
    data: DataSource,
    *,
    format: str | None = None,  # noqa: A002
    split: str = "all",
    repo: Repository | None = None,
    max_length: int | None = None,
    batch_size: int = 32,
    plot: str | Path | None = None,
    progress: bool = True,
) -> EvalReport:
    """Evaluate a reward model on preference data; optionally draw its reliability diagram.

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
        plot: Image file (``.png``, ``.pdf``, ``.svg``...) for the reliability diagram; its
            folder is created. Nothing is drawn when no pair has a non-tied prediction.
        progress: Show progress bars.

    Raises:
        DataError: Unknown split, a split asked of a model with no stored training config,
            unreadable data, or no pairs in the chosen split.
        RefError: ``model`` is neither a folder nor a known ref.
        ConfigError: ``max_length`` is below 4 or beyond the backbone's positions.
        OutputError: ``plot`` is a folder, lies under a file, or has no image suffix.
    """
    if split not in (*SPLITS, "all"):
        raise DataError(f"unknown split {split!r}: expected one of {', '.join((*SPLITS, 'all'))}")
    if plot is not None:
        _check_plot_path(plot)
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
    max_length = _token_budget(loaded, max_length)
    report = evaluate_model(loaded, dataset, max_length=max_length, batch_size=batch_size, progress=progress)
    if plot is not None and report.reliability is not None:
        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        names = [str(model) if isinstance(model, str | Path) else "model", *(Path(d).name for d in _names(data))]
        plot_reliability(report.reliability, plot, title="\n".join(names))
    return report


def score(
    model: str | Path | TextRewardModel,
    responses: Sequence[str],
    prompts: Sequence[str] | None = None,
    *,
    repo: Repository | None = None,
    max_length: int | None = None,
) -> list[float]:
    """Rewards of the texts ``prompt + response`` (prompts default to empty), in input order.

    Raises:
        ConfigError: ``max_length`` is below 4 or beyond the backbone's positions.
    """
    loaded, _ = load_model(model, repo)
    return loaded.score(prompts or [""] * len(responses), responses, max_length=_token_budget(loaded, max_length))


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
        ModelError: The folder, or the commit's model, is not a loadable reward model.
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
        """The whole model, weights included.

        Raises:
            ModelError: The folder, or the commit's model, is not a loadable reward model.
        """
        if isinstance(self._model, TextRewardModel):
            return self._model
        if not isinstance(self._model, Commit):
            return TextRewardModel.load(self.folder)
        folder = self.folder
        try:
            return TextRewardModel.load(folder)
        except ModelError as exc:  # name the commit, not the temporary folder
            raise ModelError(f"commit {self._model.id[:10]} does not load as a reward model: "
                             f"{str(exc).replace(repr(str(folder)), 'it').replace(str(folder), 'it')}") from exc


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


def _check_output_path(path: str | Path, what: str, flag: str, *, folder: bool) -> Path:
    """Refuse an output path that cannot be written, before any slow work.

    Args:
        path: The folder or file to write (it and the folders above it may be new).
        what: What it is, for the message (``"output folder"``).
        flag: The CLI flag that sets it, for the message.
        folder: Whether ``path`` is to be a folder (else a file).

    Raises:
        OutputError: ``path`` exists as the other kind, or a folder above it is a file.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        kind, wanted = ("a file", "a new or existing folder") if folder else ("a folder", "a file name")
        raise OutputError(f"{what} {path} is {kind}; give {flag} {wanted}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{what} {path} cannot be created: {parent} is a file; give {flag} another path")
            break
    return path


def _check_plot_path(path: str | Path) -> None:
    """Refuse a plot path before evaluating: see :func:`_check_output_path`; the suffix names an image format."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = _check_output_path(path, "plot file", "--plot", folder=False)
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        raise OutputError(f"plot file {path} has no image suffix matplotlib writes; end --plot in .png, .pdf or "
                          f".svg (or one of {', '.join(sorted(formats))})")


def _token_budget(model: TextRewardModel, max_length: int | None) -> int:
    """``max_length``, or the model's own budget when None, checked against the backbone.

    Raises:
        ConfigError: Below 4 tokens (room for special tokens) or beyond the backbone's positions.
    """
    if max_length is None:
        return model.max_length
    limit = model.max_positions
    if max_length < 4 or (limit is not None and max_length > limit):
        most = f" and at most {limit}, the backbone's positions" if limit is not None else ""
        raise ConfigError(f"max_length (--max-length) must be at least 4{most}; got {max_length}")
    return max_length


def _names(data: DataSource) -> list[str]:
    return [str(data)] if isinstance(data, str | Path) else [str(d) for d in data]


__all__ = [
    "ModelSource",
    "TrainRun",
    "commit",
    "evaluate",
    "load_model",
    "open_model",
    "score",
    "score_data",
    "train",
]

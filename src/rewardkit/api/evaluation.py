"""Evaluate and score a reward model given as an object, a folder or a ref."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rewardkit.api.checks import DataSource, check_plot_path, source_names, token_budget
from rewardkit.api.models import load_model, open_model
from rewardkit.data import PreferenceDataset, chat_template_renderer, load_pairs
from rewardkit.data.split import SPLITS
from rewardkit.errors import DataError
from rewardkit.evaluation import EvalReport, evaluate_model, plot_reliability, reward_table
from rewardkit.models import TextRewardModel
from rewardkit.store import Repository


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
        check_plot_path(plot)
    with open_model(model, repo) as source:
        if split != "all" and source.config is None:
            raise DataError(f"--split {split} needs the seed and fractions the model was trained with, and "
                            f"{model} has none stored: give a ref of the repository, or --split all")
        dataset = load_pairs(data, format, render_chat=chat_template_renderer(source.tokenizer))
        if split != "all":
            dataset = dataset.split(source.config.split, source.config.seed)[split]
            if not dataset.pairs:
                raise DataError(f"the {split} split of {', '.join(source_names(data))} holds no preference pair")
        loaded = source.load()  # the weights, once the data is known to be good
    max_length = token_budget(loaded, max_length)
    report = evaluate_model(loaded, dataset, max_length=max_length, batch_size=batch_size, progress=progress)
    if plot is not None and report.reliability is not None:
        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        names = [str(model) if isinstance(model, str | Path) else "model", *(Path(d).name for d in source_names(data))]
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
    return loaded.score(prompts or [""] * len(responses), responses, max_length=token_budget(loaded, max_length))


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

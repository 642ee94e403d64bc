"""``rewardkit eval`` and ``rewardkit score``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rewardkit import api
from rewardkit.cli.options import FormatOption, JsonOption, RepoOption, open_repo
from rewardkit.cli.render import console, eval_table, pair_rewards_table, print_json, text_rewards_table

ModelArg = Annotated[str, typer.Option("--model", help="A ref (main, main~1, commit-id prefix) or a model folder.")]


def _repo_for(model: str, repo: Path | None):  # noqa: ANN202
    return None if Path(model).is_dir() else open_repo(repo)


def evaluate(
    model: ModelArg,
    data: Annotated[list[str], typer.Option("--data", help="Preference data file or dataset id; repeat for several.")],
    format: FormatOption = None,  # noqa: A002
    split: Annotated[str, typer.Option(help="all, or train/validation/test: the split the stored model was "
                                       "trained with (seed and fractions from its commit).")] = "all",
    max_length: Annotated[int | None, typer.Option(help="Tokens per text; default: the model's training "
                                                   "max_length, else 512.", show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per forward pass.", min=1)] = 32,
    plot: Annotated[Path | None, typer.Option(help="Write the reliability diagram to this image (.png, .pdf, .svg).",
                                              show_default=False)] = None,
    as_json: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Pairwise accuracy with a bootstrap 95% CI, per source and subset, longer-wins baseline, ECE."""
    report = api.evaluate(model, data, format=format, split=split, repo=_repo_for(model, repo),
                          max_length=max_length, batch_size=batch_size, plot=plot, progress=not as_json)
    if as_json:
        print_json(report.to_dict())
        return
    console.print(eval_table(report, f"{model} on {', '.join(Path(d).name for d in data)} ({split})"))
    if plot is not None and report.reliability is not None:
        console.print(f"reliability diagram: {plot}")


def score(
    model: Annotated[str, typer.Argument(help="A ref (main, main~1, commit-id prefix) or a model folder.")],
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to score (prompt and response together).",
                                                      show_default=False)] = None,
    data: Annotated[str | None, typer.Option("--data", help="Score the chosen and rejected texts of a "
                                             "preference file instead.", show_default=False)] = None,
    format: FormatOption = None,  # noqa: A002
    prompt: Annotated[str, typer.Option(help="Prompt put before each TEXT.")] = "",
    as_json: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Rewards of texts, or of the chosen/rejected responses of a data file."""
    if not texts and data is None:
        raise typer.BadParameter("give TEXT arguments or --data FILE")
    r = _repo_for(model, repo)
    if data is None:
        rewards = api.score(model, texts, [prompt] * len(texts), repo=r)
        if as_json:
            print_json([{"text": t, "reward": x} for t, x in zip(texts, rewards, strict=True)])
        else:
            console.print(text_rewards_table(texts, rewards))
        return
    dataset, scored = api.score_data(model, data, format=format, repo=r)
    rows = [{"location": p.location, "tie": p.tie, "chosen": c, "rejected": j, "difference": c - j}
            for p, (c, j) in zip(dataset.pairs + dataset.ties, scored, strict=True)]
    if as_json:
        print_json(rows)
    else:
        console.print(pair_rewards_table(rows))

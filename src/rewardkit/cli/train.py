"""``rewardkit train``: flags come from :class:`RewardConfig`, so help and code never disagree."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from typer.models import OptionInfo

from rewardkit import api
from rewardkit.api.tracking import mlflow_requested
from rewardkit.cli.options import FormatOption, JsonOption, RepoOption, open_repo
from rewardkit.cli.render import bold, console, eval_table, print_json, rating_table
from rewardkit.training.config import RewardConfig

D = RewardConfig()


def _option(name: str, **kwargs) -> OptionInfo:
    """The ``typer.Option`` of a :class:`RewardConfig` field: its flag and help text come from the field."""
    flag = RewardConfig.flag(name)
    if isinstance(getattr(D, name), bool):
        flag = f"{flag}/--no-{flag.removeprefix('--')}"
    return typer.Option(flag, help=RewardConfig.help(name), **kwargs)


def train(
    data: Annotated[
        list[str],
        typer.Option(
            "--data",
            help="Preference data (or rated data with --objective mse): a file (.jsonl/.json/.parquet/.csv, "
            ".gz ok) or a Hugging Face dataset id. Repeat for several.",
        ),
    ],
    format: FormatOption = None,  # noqa: A002
    eval_data: Annotated[
        list[str] | None,
        typer.Option("--eval-data", help="More data to evaluate on after training (all of it); the metrics go "
                     "into the commit. Repeat for several.", show_default=False),
    ] = None,
    objective: Annotated[str, _option("objective")] = D.objective,
    standardize_ratings: Annotated[bool, _option("standardize_ratings")] = D.standardize_ratings,
    base_model: Annotated[str | None, _option("base_model", show_default=False)] = None,
    init_from: Annotated[str | None, _option("init_from", show_default=False)] = None,
    freeze: Annotated[list[str] | None, _option("freeze", show_default=False)] = None,
    max_length: Annotated[int, _option("max_length")] = D.max_length,
    epochs: Annotated[float, _option("epochs")] = D.epochs,
    batch_size: Annotated[int, _option("batch_size")] = D.batch_size,
    gradient_accumulation_steps: Annotated[int, _option("gradient_accumulation_steps")] = D.gradient_accumulation_steps,
    learning_rate: Annotated[float, _option("learning_rate")] = D.learning_rate,
    warmup_ratio: Annotated[float, _option("warmup_ratio")] = D.warmup_ratio,
    center_rewards: Annotated[float | None, _option("center_rewards_coefficient", show_default=False)] = None,
    weight_decay: Annotated[float, _option("weight_decay")] = D.weight_decay,
    max_grad_norm: Annotated[float, _option("max_grad_norm")] = D.max_grad_norm,
    use_margin: Annotated[bool, _option("use_margin")] = D.use_margin,
    disable_dropout: Annotated[bool, _option("disable_dropout")] = D.disable_dropout,
    group_by_length: Annotated[bool, _option("group_by_length")] = D.group_by_length,
    shared_prefix: Annotated[bool, _option("shared_prefix")] = D.shared_prefix,
    bf16: Annotated[bool, _option("bf16")] = D.bf16,
    seed: Annotated[int, _option("seed")] = D.seed,
    limit: Annotated[int | None, _option("limit", show_default=False)] = None,
    logging_steps: Annotated[int, _option("logging_steps")] = D.logging_steps,
    save_steps: Annotated[int | None, _option("save_steps", show_default=False)] = None,
    threads: Annotated[int | None, _option("num_threads", show_default=False)] = None,
    lora_r: Annotated[int | None, _option("lora_r", show_default=False)] = None,
    lora_alpha: Annotated[float | None, _option("lora_alpha", show_default=False)] = None,
    lora_target: Annotated[list[str] | None, _option("lora_target_modules", show_default=False)] = None,
    lora_dropout: Annotated[float, _option("lora_dropout")] = D.lora_dropout,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            help="Run folder for the model, curves and checkpoints; default: runs/<time>.", show_default=False
        ),
    ] = None,
    resume_from: Annotated[
        Path | None, typer.Option(help="Checkpoint folder to resume from.", show_default=False)
    ] = None,
    commit: Annotated[
        bool, typer.Option("--commit", help="Commit the trained model with its config and metrics.")
    ] = False,
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Commit message (implies --commit).", show_default=False)
    ] = None,
    mlflow: Annotated[
        bool | None,
        typer.Option("--mlflow/--no-mlflow", help="Log the config, metrics and curves to MLflow and record the "
                     "run in the commit; default: on when MLFLOW_TRACKING_URI is set.", show_default=False),
    ] = None,
    mlflow_experiment: Annotated[
        str, typer.Option(help="MLflow experiment of the run (created when missing).")
    ] = "rewardkit",
    as_json: JsonOption = False,
    repo: RepoOption = None,
) -> None:
    """Train a text reward model (Bradley-Terry on pairs, or MSE on ratings) on the training split of the data.

    Each source is split by prompt into train/validation/test; ties are dropped from
    training and counted; long pairs are truncated, never dropped. The model is evaluated
    on the validation and test splits (and --eval-data) and, with --commit, stored with its
    config and all those metrics.

    With --lora-r a LoRA adapter is trained (the head stays fully trainable) and a commit
    stores only the adapter and the head, on a base commit: --base-model REF when it names
    a commit, else the starting model is committed first, on the same branch, as the base.

    With --objective mse the data are rated examples (prompt, response, rating) and the
    held-out splits report MSE, Pearson and Spearman. --init-from REF starts from a stored
    version and records it as the commit's lineage; --freeze PATTERN keeps matching weights fixed.
    """
    config = RewardConfig(
        objective=objective,
        standardize_ratings=standardize_ratings,
        base_model=base_model,
        init_from=init_from,
        freeze=tuple(freeze) if freeze else None,
        max_length=max_length,
        epochs=epochs,
        batch_size=batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        learning_rate=learning_rate,
        warmup_ratio=warmup_ratio,
        center_rewards_coefficient=center_rewards,
        weight_decay=weight_decay,
        max_grad_norm=max_grad_norm,
        use_margin=use_margin,
        disable_dropout=disable_dropout,
        group_by_length=group_by_length,
        shared_prefix=shared_prefix,
        bf16=bf16,
        seed=seed,
        limit=limit,
        logging_steps=logging_steps,
        save_steps=save_steps,
        num_threads=threads,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_target_modules=tuple(lora_target) if lora_target else None,
        lora_dropout=lora_dropout,
    )
    if commit or message:
        message = message or f"train on {', '.join(Path(d).name for d in data)}"
    run_dir = output_dir or Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")
    target_repo = open_repo(repo) if message else None
    tracking = api.MlflowTracking(mlflow_experiment) if mlflow_requested(mlflow) else None
    run = api.train(
        data,
        config,
        format=format,
        eval_data=eval_data or [],
        output_dir=run_dir,
        commit_message=message,
        repo=target_repo,
        resume_from=resume_from,
        progress=not as_json,
        mlflow=tracking,
    )
    if not run.is_main_process:
        return
    res = run.result
    if as_json:
        print_json(
            {
                "model_dir": str(run.model_dir),
                "commit": run.commit.id if run.commit else None,
                "mlflow": tracking.reference() if tracking else None,
                "train": res.metrics(),
                "ties_dropped": run.n_ties_dropped,
                "identical_dropped": run.n_identical,
                "empty_responses": run.n_empty,
                "evaluations": {name: report.to_dict() for name, report in run.evaluations.items()},
            }
        )
        return
    identical = f", {run.n_identical} of them identical texts" if run.n_identical else ""
    empty = f"; {run.n_empty} pairs with an empty response, kept" if run.n_empty else ""
    if res.objective == "mse":
        scale = f"; ratings standardised (mean {res.rating_scale[0]:.4g}, std {res.rating_scale[1]:.4g})" \
            if res.rating_scale else ""
        summary = (f"trained (MSE) on {res.n_pairs} rated examples (0 dropped: {res.prompts_truncated} prompts and "
                   f"{res.responses_truncated} responses trimmed{scale}) in {res.seconds:.0f}s, "
                   f"{res.pairs_per_second:.1f} examples/s; final loss {res.final_loss:.4f}, in-batch ranking "
                   f"agreement {res.final_accuracy:.3f}")
    else:
        summary = (f"trained on {res.n_pairs} pairs ({run.n_ties_dropped} ties dropped{identical}{empty}; 0 long pairs "
                   f"dropped: {res.prompts_truncated} prompts and {res.responses_truncated} responses trimmed) in "
                   f"{res.seconds:.0f}s, {res.pairs_per_second:.1f} pairs/s; final loss {res.final_loss:.4f}, train "
                   f"accuracy {res.final_accuracy:.3f}")
    if res.frozen:
        summary += f"; {len(res.frozen)} parameters frozen ({', '.join(config.freeze or ())})"
    console.print(summary)
    console.print(f"model: {run.model_dir}   curves: {run_dir / 'curves.csv'}, {run_dir / 'curves.png'}")
    for name, report in run.evaluations.items():
        title = f"{name} split" if name in ("validation", "test") else name
        console.print(rating_table(report, title) if res.objective == "mse" else eval_table(report, title))
    if tracking:
        console.print(f"MLflow run {tracking.run_id} (experiment {tracking.experiment!r}) at {tracking.tracking_uri}")
    if run.commit:
        console.print(bold("committed"), f"{run.commit.id[:10]}: {run.commit.message}")

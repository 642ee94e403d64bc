"""Train a text reward model, evaluate it on its held-out splits, and commit it."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardkit.api.checks import DataSource, check_output_path, source_names
from rewardkit.data import chat_template_renderer, fingerprint, load_pairs, load_rated
from rewardkit.errors import ConfigError
from rewardkit.training.config import RewardConfig

if TYPE_CHECKING:
    from rewardkit.api.models import ModelSource
    from rewardkit.api.tracking import MlflowTracking
    from rewardkit.evaluation import EvalReport, RatingReport
    from rewardkit.models import TextRewardModel
    from rewardkit.store import Commit, Repository
    from rewardkit.training import TrainResult

DEFAULT_BACKBONE_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # what models.default_backbone() ships
LORA_BASE_DIR = "base"  # <output_dir>/base: the model a LoRA run's adapter applies to


@dataclass
class TrainRun:
    """The outcome of :func:`train`.

    Attributes:
        result: What the trainer did (pairs, truncations, speed, curves).
        evaluations: Reports by name: ``"validation"`` and ``"test"`` (the held-out splits of
            the training data) and one per ``eval_data`` source (its file name); a
            :class:`RatingReport` (MSE, Pearson, Spearman) for ``objective="mse"``.
        model_dir: The saved model folder (loads with ``from_pretrained``).
        commit: The commit, when one was asked for; its metrics hold every evaluation.
        n_ties_dropped: Tied pairs of the training split, left out of training.
        n_identical: Of those ties, pairs whose chosen and rejected texts are identical.
        n_empty: Training pairs with an empty chosen or rejected response (kept).
        is_main_process: False in the other processes of a multi-process run, which neither
            save, evaluate nor commit.
    """

    result: TrainResult
    evaluations: dict[str, EvalReport | RatingReport]
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
    mlflow: MlflowTracking | None = None,
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

    With ``config.objective == "mse"`` the data are rated examples (prompt, response, rating;
    :func:`rewardkit.data.load_rated`), split the same way, the loss is the MSE of the reward
    against the rating, and the held-out reports give MSE, Pearson and Spearman; the commit
    records ``params["objective"]``, with standardised ratings their training mean and std in
    ``params["ratings"]``, and stores no probe set (that is made of pairs).

    ``config.init_from`` names a stored version to start from (transfer); unlike
    ``base_model`` it must resolve in the repository. Either way a stored starting point is
    the commit's base (lineage) in ``params["base"]``, beside the freeze patterns in
    ``params["frozen"]`` (:func:`rewardkit.training.freeze.lineage_params`); the commit's
    parent is the branch head as usual.

    With ``mlflow`` the run is logged to MLflow (config, every metric, the curves; see
    :mod:`rewardkit.api.tracking`), the commit records the MLflow run in ``params["mlflow"]``
    and the MLflow run is tagged with the commit id; an error ends the MLflow run FAILED.

    All data, ``eval_data`` included, is read and checked before torch and the backbone's
    weights are loaded, so a data error comes back in about the time Python takes to start;
    a chat template needs only the tokenizer.

    ``config.base_model`` may name a commit of the repository (when no folder has that
    name): training starts from its weights and the commit records it in ``params["base"]``.
    With ``config.lora_r`` a LoRA adapter is trained; the starting model is saved to
    ``<output_dir>/base`` and the adapter to ``<output_dir>/model``, and the commit is an
    adapter commit (:mod:`rewardkit.store.adapters`) on that base commit, or, when the base
    is a folder or hub id, on a commit of the starting model (``LoRA base: <name>``) stored
    on no branch: the adapter commit's lineage keeps it, the branch gains only the adapter
    commit, and if that is refused, gc collects the base after its grace period.

    Raises:
        DataError: The data cannot be read or holds no training pair.
        ModelError: The backbone cannot be loaded.
        ConfigError: A hyperparameter is out of range, ``format`` is given for rated data, or a
            freeze pattern matches no parameter.
        RefError: ``config.init_from`` names no version of the repository.
        OutputError: ``output_dir`` (or a folder above it) is a file.
        StoreError: ``commit_message`` is given and the repository refuses the commit.
        ConfigError: ``mlflow`` is given and MLflow refuses a call (an unknown URI scheme, a store it cannot reach).
    """
    config = config or RewardConfig()
    check_output_path(output_dir, "output folder", "--output-dir", folder=True)
    if config.objective == "mse" and format is not None:
        raise ConfigError(f"--format {format} names a preference-pair format; rated data (--objective mse) has one "
                          "format: prompt, response (or completion), rating (or score)")
    if (commit_message is not None or config.init_from is not None) and repo is None:
        from rewardkit.store import Repository

        repo = Repository.discover()  # fail before training, not after
    with contextlib.ExitStack() as stack:
        if mlflow is not None:
            stack.enter_context(mlflow)  # ends the MLflow run, FAILED if anything below raises
        base = _stored_base(config, repo, stack)
        return _train(data, config, base, format=format, eval_data=eval_data, output_dir=output_dir,
                      commit_message=commit_message, repo=repo, resume_from=resume_from, progress=progress,
                      mlflow=mlflow)


def _stored_base(config: RewardConfig, repo: Repository | None, stack: contextlib.ExitStack) -> ModelSource | None:
    """The stored model to start from, opened: ``config.init_from``, or ``config.base_model`` when it names a commit.

    ``base_model`` may also be a folder or a hub id (then None); ``init_from`` must be a ref.

    Raises:
        ConfigError: LoRA on a base that is itself a LoRA adapter.
        ModelError: The stored version is not a text reward model (e.g. a state-action one).
        RefError: ``init_from`` names no version of the repository.
    """
    name = config.init_from or config.base_model
    if name is None or (config.init_from is None and Path(name).expanduser().is_dir()):
        return None  # before the imports below, which bring torch: a data error must come back fast
    from rewardkit.api.models import open_model
    from rewardkit.errors import RefError, StoreError
    from rewardkit.store import Repository
    from rewardkit.store.adapters import is_adapter

    if config.init_from is not None:
        source = stack.enter_context(open_model(name, repo))
    else:
        try:
            repo = repo or stack.enter_context(Repository.discover())
        except StoreError:  # no repository here: a hub id
            return None
        try:
            source = stack.enter_context(open_model(name, repo))
        except RefError:  # not a ref of the repository: a hub id (a damaged repository is an error, not a miss)
            return None
    flag = "--init-from" if config.init_from is not None else "--base-model"
    from rewardkit.models.loading import reward_model_kind

    kind = reward_model_kind(source.folder)  # from config.json alone
    if kind != "text":
        from rewardkit.errors import ModelError

        raise ModelError(f"{flag} {name} is a {kind} reward model; `rewardkit train` trains text reward models "
                         "(prompt and response); give a text model's ref")
    if config.lora and is_adapter(source.commit):
        raise ConfigError(f"{flag} {name} is a LoRA adapter; the base of a LoRA adapter must be a full model: "
                          f"`rewardkit checkout {name} --merged --to DIR`, commit DIR, and train on that commit")
    return source


def _train(data: DataSource, config: RewardConfig, base: ModelSource | None, *, format: str | None,  # noqa: A002
           eval_data: Sequence[str | Path], output_dir: str | Path, commit_message: str | None,
           repo: Repository | None, resume_from: str | Path | None, progress: bool,
           mlflow: MlflowTracking | None = None) -> TrainRun:
    """:func:`train` once the base model is known: a folder or hub id (``base`` None) or a stored commit."""

    def tokenizer() -> Any:
        from rewardkit.models.text import load_tokenizer

        return base.tokenizer() if base is not None else load_tokenizer(config.base_model)

    rated = config.objective == "mse"
    if rated:
        parts = load_rated(data).split(config.split, config.seed)
        held_out = {name: parts[name] for name in ("validation", "test") if parts[name].examples}
        held_out |= {Path(d).name: load_rated(d) for d in eval_data}
        train_pairs = parts["train"].first_per_source(config.limit).examples
        counts = {"n_ties_dropped": 0}
    else:
        render = chat_template_renderer(tokenizer)
        parts = load_pairs(data, format, render_chat=render).split(config.split, config.seed)
        held_out = {name: parts[name] for name in ("validation", "test") if parts[name].pairs}
        held_out |= {Path(d).name: load_pairs(d, render_chat=render) for d in eval_data}
        train_split = parts["train"].first_per_source(config.limit)
        train_pairs = train_split.pairs
        counts = {"n_ties_dropped": len(parts["train"].ties), "n_identical": parts["train"].n_identical,
                  "n_empty": train_split.n_empty}
    if not train_pairs:
        from rewardkit.errors import DataError

        raise DataError(f"the training split of {', '.join(map(str, source_names(data)))} is empty; "
                        "give more data or a larger training share")

    if config.lora:  # a typo in --lora-target is refused before any weight loads
        from rewardkit.models.lora import check_backbone_targets

        check_backbone_targets(base.folder if base is not None else config.base_model, config.lora_target_modules)

    # torch and the weights are loaded only once the data is known to be good
    from rewardkit.evaluation import evaluate_ratings, evaluate_with_rewards
    from rewardkit.store.probe import make_probe
    from rewardkit.training import RewardTrainer
    from rewardkit.training.freeze import FREEZE_PARAM, lineage_params

    model = _load_base(config, base, Path(output_dir)) if config.lora or base is not None else None
    trainer = RewardTrainer(config, model)
    if mlflow is not None and trainer.accelerator.is_main_process:  # after the data and model checks
        mlflow.start(config, run_name=Path(output_dir).name)
    result = trainer.train(train_pairs, output_dir, resume_from=resume_from, progress=progress)
    model_dir = Path(output_dir) / "model"
    if not trainer.accelerator.is_main_process:  # under `accelerate launch`, one process saves and commits
        return TrainRun(result, {}, model_dir, None, **counts, is_main_process=False)
    result.model.tokenizer.model_max_length = config.max_length  # so a checkout scores as trained
    result.model.save(model_dir)
    if rated:
        evaluated = {name: (evaluate_ratings(result.model, dataset, rating_scale=result.rating_scale,
                                             max_length=config.max_length, progress=progress), {})
                     for name, dataset in held_out.items()}
    else:
        evaluated = {name: evaluate_with_rewards(result.model, dataset, max_length=config.max_length,
                                                 progress=progress) for name, dataset in held_out.items()}
    reports = {name: report for name, (report, _) in evaluated.items()}
    metrics = result.metrics()
    for name, report in reports.items():
        metrics |= report.metrics(name)
    if mlflow is not None:
        mlflow.log_results(metrics, result.curves, Path(output_dir))

    commit = None
    if commit_message is not None:
        fingerprints = {"train": fingerprint(train_pairs)} | {name: d.fingerprint for name, d in held_out.items()}
        backbone = base.commit.backbone if base is not None else config.base_model or DEFAULT_BACKBONE_NAME
        params = {"config": config.to_dict(), "objective": config.objective, "data": source_names(data),
                  "eval_data": source_names(eval_data), "formats": parts["train"].formats,
                  "fingerprints": fingerprints}
        if result.rating_scale is not None:
            params["ratings"] = {"mean": result.rating_scale[0], "std": result.rating_scale[1]}
        if base is not None:  # lineage: the stored version the weights came from
            params |= lineage_params(base.commit.id, config.freeze)
        elif config.freeze:
            params[FREEZE_PARAM] = list(config.freeze)
        if mlflow is not None:
            params["mlflow"] = mlflow.reference()
        probe_objects = []
        split = next((name for name in ("test", "validation") if name in held_out), None)
        if split is not None and not rated:  # the probe set `diff` compares versions on: the split's first pairs
            probe = make_probe(held_out[split].pairs, evaluated[split][1])  # rewards the evaluation computed
            params["probe"] = probe.param() | {"split": split}
            probe_objects = [probe.pairs_bytes(), probe.rewards]
        meta = dict(params=params, metrics=metrics, data_fingerprint=fingerprints["train"], backbone=backbone,
                    extra_objects=probe_objects)
        if config.lora:
            from rewardkit.store.adapters import commit_adapter

            base_commit = base.commit if base is not None else repo.commit_dir(  # on no branch: lineage only
                Path(output_dir) / LORA_BASE_DIR, f"LoRA base: {backbone}", backbone=backbone, move_branch=False)
            commit = commit_adapter(repo, model_dir, base_commit, commit_message, **meta)
        else:
            commit = repo.commit_dir(model_dir, commit_message, **meta)
        if mlflow is not None:
            mlflow.tag_commit(commit.id)
    return TrainRun(result, reports, model_dir, commit, **counts)


def _load_base(config: RewardConfig, base: ModelSource | None, output_dir: Path) -> TextRewardModel:
    """The model training starts from, loaded here; a LoRA run also saves it to ``<output_dir>/base``.

    That folder is the base the adapter applies to (its fresh head included), so the run
    folder loads with peft alone, and a commit stores it as the adapter's base commit.
    """
    from accelerate import PartialState
    from accelerate.utils import set_seed

    from rewardkit.models import TextRewardModel

    set_seed(config.seed)  # the fresh head's init, as RewardTrainer seeds it
    model = base.load() if base is not None else TextRewardModel.load(config.base_model)
    if config.lora:
        if PartialState().is_main_process:
            model.tokenizer.model_max_length = config.max_length
            model.save(output_dir / LORA_BASE_DIR)
        # what peft writes as the adapter's base_model_name_or_path: the run folder's base
        model.backbone.name_or_path = str((output_dir / LORA_BASE_DIR).resolve())
    return model

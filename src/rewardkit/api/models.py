"""Opening a model given as an object, a folder or a ref; committing a model folder."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

from rewardkit.errors import ModelError
from rewardkit.models import TextRewardModel
from rewardkit.models.loading import load_reward_model, reward_model_kind
from rewardkit.models.reward_head import check_reward_model_dir
from rewardkit.models.text import load_tokenizer
from rewardkit.store import Commit, Repository
from rewardkit.store.adapters import checkout_adapter, effective_tensors, is_adapter, model_files
from rewardkit.store.modeldir import map_like_weights_file, refuse_pickled_weights, write_model_dir
from rewardkit.training import RewardConfig


def load_model(
    model: str | Path | TextRewardModel, repo: Repository | None = None
) -> tuple[TextRewardModel, RewardConfig | None]:
    """Load a model given as an object, a folder or a ref; with its training config if stored.

    A ref loads its tensors straight from the repository's objects (re-hashed as read);
    only the small files (config, tokenizer) pass through a temporary folder, so no copy
    of the weights is ever written.

    Raises:
        RefError: Not a folder and not a ref of the repository.
        ModelError: The folder, or the commit's model, is not a loadable reward model.
    """
    with open_model(model, repo) as source:
        return source.load(), source.config


class ModelSource:
    """A model given as an object, a folder or a commit, opened in steps: tokenizer first, weights last.

    Made by :func:`open_model`. A commit's small files (config, tokenizer) are written to a
    temporary folder on first need; its tensors are read straight from the repository's
    objects (re-hashed as read), so no copy of the weights is ever written. A LoRA adapter
    commit opens as the model it means: its base's config, its own tokenizer, and the
    effective tensors (:func:`rewardkit.store.adapters.effective_tensors`, base + LoRA delta).

    Attributes:
        config: The training config stored with a commit, else None.
    """

    def __init__(self, model: TextRewardModel | Path | Commit, name: str, repo: Repository | None,
                 scratch: Path) -> None:
        """Wrap a loaded model, a model folder, or a commit of ``repo`` (``name``: how the user named it)."""
        self._model, self._name, self._repo, self._scratch = model, name, repo, scratch
        stored = (model.params or {}).get("config") if isinstance(model, Commit) else None
        self.config = RewardConfig.from_dict(stored) if stored else None

    @property
    def commit(self) -> Commit | None:
        """The commit opened, or None for a folder or a loaded model."""
        return self._model if isinstance(self._model, Commit) else None

    @cached_property
    def folder(self) -> Path:
        """The model folder; for a commit, its config and tokenizer files only."""
        if isinstance(self._model, Commit):
            return write_model_dir(self._scratch / "model", None, model_files(self._repo, self._model))
        return Path(self._model)

    def tokenizer(self) -> Any:
        """The tokenizer alone, without loading any weights.

        Raises:
            ModelError: The folder, or the commit's model, has no loadable tokenizer.
        """
        if isinstance(self._model, TextRewardModel):
            return self._model.tokenizer
        with self._naming_commit():
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
        # laid out as a checkout's weights file maps, but in memory (same kernels, same bits)
        state_dict = map_like_weights_file(dict(effective_tensors(self._repo, self._model)))
        with self._naming_commit():
            return TextRewardModel.load(self.folder, state_dict=state_dict)

    @contextmanager
    def _naming_commit(self) -> Iterator[None]:
        """A ``ModelError`` about a commit's temporary folder names the commit instead."""
        if not isinstance(self._model, Commit):
            yield
            return
        try:
            yield
        except ModelError as exc:
            folder = str(self.folder)
            raise ModelError(f"commit {self._model.id[:10]} ({self._name}) does not load as a reward model: "
                             f"{str(exc).replace(repr(folder), 'it').replace(folder, 'it')}") from exc


@contextmanager
def open_model(
    model: str | Path | TextRewardModel | Commit, repo: Repository | None = None
) -> Iterator[ModelSource]:
    """Resolve a model given as an object, a folder, a ref or a commit, without loading it (see :class:`ModelSource`).

    A :class:`~rewardkit.store.Commit` need not be stored yet (a merge evaluates its model
    before committing it); its manifest and objects must be.

    Raises:
        RefError: Not a folder and not a ref of the repository.
    """
    with tempfile.TemporaryDirectory(prefix="rewardkit-") as scratch:
        if isinstance(model, Commit):
            yield ModelSource(model, model.id[:10], repo or Repository.discover(), Path(scratch))
            return
        if isinstance(model, TextRewardModel) or Path(model).is_dir():
            source = model if isinstance(model, TextRewardModel) else Path(model)
            yield ModelSource(source, str(model), None, Path(scratch))
            return
        repo = repo or Repository.discover()
        yield ModelSource(repo.resolve(str(model)), str(model), repo, Path(scratch))


def checkout(ref: str, to: str | Path, *, merged: bool = False, force: bool = False,
             repo: Repository | None = None) -> Commit:
    """Write the model ``ref`` names as a folder; a LoRA adapter as its adapter folder, or ``merged`` as full weights.

    A full commit is written as :meth:`Repository.checkout` writes it (``merged`` changes
    nothing). An adapter commit is written by :func:`rewardkit.store.adapters.checkout_adapter`:
    the adapter folder with its base in ``base/`` (loads with ``peft``), or with ``merged``
    one plain model folder with the LoRA delta merged in (loads with transformers).

    Returns:
        The commit written.

    Raises:
        RefError: ``ref`` names no commit.
        StoreError: ``to`` is a file or a non-empty folder without ``force``; an object is
            missing or corrupt; a partial clone never fetched the commit's objects (the message
            says to run ``rewardkit fetch``).
    """
    from rewardkit.store.remote.partial import check_fetched

    repo = repo or Repository.discover()
    commit = repo.resolve(ref)
    check_fetched(repo, commit, ref)  # a partial clone: say how to fetch it, rather than "object missing"
    if is_adapter(commit):
        checkout_adapter(repo, commit, to, merged=merged, force=force)
    else:
        repo.checkout(commit.id, to, force=force)
    return commit


def _model_kind(model_dir: str | Path) -> str:
    """The kind :func:`reward_model_kind` reads from ``config.json``; ``"text"`` when it cannot be read."""
    try:
        return reward_model_kind(model_dir)
    except ModelError:  # missing folder or config: check_reward_model_dir says what a text model needs
        return "text"


def commit(
    model_dir: str | Path, message: str, *, repo: Repository | None = None, branch: str | None = None,
    verify_existing: bool = False, retry: bool = False,
) -> Commit:
    """Commit a saved reward model folder on ``branch``.

    A text model's folder must hold a one-output sequence-classification model
    (``config.json``, ``model.safetensors`` and the tokenizer's files, see
    :func:`rewardkit.models.reward_head.check_reward_model_dir`), so that every stored
    version scores texts; a state-action, task-conditioned or ensemble folder (its
    ``config.json`` ``model_type`` says which, :func:`rewardkit.models.loading.reward_model_kind`)
    must load as that model. Nothing is written when the folder does not.

    Args:
        model_dir: The folder.
        message: The commit message.
        repo: The repository; discovered when None.
        branch: The branch the commit advances; default the current branch.
        verify_existing: Re-hash every object the commit reuses, however large (see
            :meth:`rewardkit.store.Repository.commit_dir`).
        retry: If another process moved the branch meanwhile, commit on top of its new head.

    Raises:
        ModelError: The folder is not such a model, or holds pickled weights
            (``pytorch_model.bin``: weights are safetensors only); the message says why.
        StoreError: The repository refuses the commit (empty message, bad branch name).
    """
    refuse_pickled_weights(model_dir)  # before "no model.safetensors": say why a pickle is not enough
    if _model_kind(model_dir) == "text":
        check_reward_model_dir(model_dir)
    else:
        load_reward_model(model_dir)  # config and every tensor must match: ModelError names the file
    return (repo or Repository.discover()).commit_dir(model_dir, message, branch=branch,
                                                    verify_existing=verify_existing, retry=retry)

"""Transfer helpers shared by every model family: freeze parameters by name pattern, record lineage.

A model fine-tuned from a stored version (``train --init-from REF``) records that version as
its base commit in ``params["base"]`` (:func:`lineage_params`), which
:meth:`rewardkit.store.Commit.base_commits` reads: gc and push keep the base, fsck checks it,
and ``show`` / ``log`` display it. Frozen parameters keep ``requires_grad=False``, so no
optimizer touches them and they stay bit-identical; the store then holds only the changed
tensors of the new version (one object per tensor, deduplicated by content).
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

from torch import nn

from rewardkit.errors import ConfigError

BASE_PARAM = "base"
"""``params`` key naming the commit a model was initialised from (read by ``Commit.base_commits``)."""
FREEZE_PARAM = "frozen"
"""``params`` key listing the freeze patterns of a transfer run."""


def freeze_parameters(module: nn.Module, patterns: str | Sequence[str]) -> list[str]:
    """Set ``requires_grad=False`` on every parameter whose name matches one of ``patterns``.

    Matching is :func:`fnmatch.fnmatchcase` on the names of ``module.named_parameters()``
    (for a text model pass its ``backbone``, whose names are those of ``model.safetensors``),
    e.g. ``"bert.embeddings.*"`` or ``"*.layer.0.*"``.

    Args:
        module: The model whose parameters to freeze.
        patterns: One fnmatch pattern or several.

    Returns:
        The names of the frozen parameters, in module order.

    Raises:
        ConfigError: A pattern matches no parameter (the message names a few real ones), or
            the patterns match every parameter (nothing would train).
    """
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    names = [name for name, _ in module.named_parameters()]
    for pattern in patterns:
        if not any(fnmatchcase(name, pattern) for name in names):
            shown = ", ".join(names[:3] + (["...", names[-1]] if len(names) > 3 else []))
            raise ConfigError(f"--freeze {pattern!r} matches no parameter of the model; its parameters are named "
                              f"like {shown}")
    frozen = []
    for name, parameter in module.named_parameters():
        if any(fnmatchcase(name, pattern) for pattern in patterns):
            parameter.requires_grad_(False)
            frozen.append(name)
    if len(frozen) == len(names):
        raise ConfigError(f"--freeze {' '.join(patterns)} matches all {len(names)} parameters; nothing would train: "
                          "freeze fewer (e.g. leave the head out)")
    return frozen


def lineage_params(base_commit: str, freeze: Sequence[str] | None = None) -> dict[str, Any]:
    """The ``params`` entries of a model initialised from ``base_commit``: ``{"base": id, "frozen": [...]}``.

    Args:
        base_commit: Full id of the commit the weights came from.
        freeze: The freeze patterns used, if any (recorded as given).
    """
    params: dict[str, Any] = {BASE_PARAM: base_commit}
    if freeze:
        params[FREEZE_PARAM] = list(freeze)
    return params

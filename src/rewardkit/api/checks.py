"""Checks of the API's arguments at the boundary, before any slow work."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rewardkit.errors import ConfigError, OutputError

if TYPE_CHECKING:
    from rewardkit.models import TextRewardModel

DataSource = str | Path | Sequence[str | Path]


def check_output_path(path: str | Path, what: str, flag: str, *, folder: bool) -> Path:
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


def check_plot_path(path: str | Path) -> None:
    """Refuse a plot path before evaluating: see :func:`check_output_path`; the suffix names an image format."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = check_output_path(path, "plot file", "--plot", folder=False)
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        raise OutputError(f"plot file {path} has no image suffix matplotlib writes; end --plot in .png, .pdf or "
                          f".svg (or one of {', '.join(sorted(formats))})")


def token_budget(model: TextRewardModel, max_length: int | None) -> int:
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


def source_names(data: DataSource) -> list[str]:
    """The data sources as strings, for messages and commit params."""
    return [str(data)] if isinstance(data, str | Path) else [str(d) for d in data]

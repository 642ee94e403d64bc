"""Package attributes imported on first use (PEP 562), so that the CLI starts without torch.

:mod:`rewardkit`, :mod:`rewardkit.api`, :mod:`rewardkit.store` and :mod:`rewardkit.training`
re-export names whose modules import torch (about a second). Importing them lazily lets
``rewardkit train --data bad.jsonl`` read the data and report its error before torch is
loaded; the first use of a name imports its module, as an eager import would have.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` serving ``exports`` on first access.

    Args:
        package: The package's ``__name__``.
        exports: Exported name -> the module that defines it.

    Returns:
        ``(__getattr__, __dir__)``, to assign at the package's top level. The first access
        of a name imports its module and stores the value in the package, so later accesses
        are plain attribute reads.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 (PEP 562's name)
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__

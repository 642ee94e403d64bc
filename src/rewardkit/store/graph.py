"""Reachability in the store's graphs: commits through parents and bases, objects through delta bases.

One depth-first walk serves every caller; what differs between them is only which ids come
next and what a missing one means, and that is the ``edges`` function each passes (it may
skip, or raise on, an id it cannot follow).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


def closure(roots: Iterable[str], edges: Callable[[str], Iterable[str]]) -> set[str]:
    """Return ``roots`` and every id reachable from them through ``edges``.

    Args:
        roots: Where to start (duplicates are fine).
        edges: ``id -> ids it leads to``; called once per id reached. An exception it raises
            propagates (e.g. a commit missing from a history that must be whole).
    """
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        id = todo.pop()
        if id not in seen:
            seen.add(id)
            todo.extend(edges(id))
    return seen

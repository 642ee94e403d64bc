"""graph.closure: the one reachability walk that gc, fsck and remote transfers share."""

import pytest

from rewardkit.errors import StoreError
from rewardkit.store.graph import closure


def test_closure_follows_edges_once_through_cycles_and_duplicates() -> None:
    graph = {"a": ["b", "c"], "b": ["c", "a"], "c": [], "d": ["a"]}
    calls: list[str] = []

    def edges(id: str) -> list[str]:
        calls.append(id)
        return graph[id]

    assert closure(["a", "a"], edges) == {"a", "b", "c"}  # "d" only points in
    assert sorted(calls) == ["a", "b", "c"]  # each id's edges read once


def test_an_error_from_edges_propagates() -> None:
    def edges(id: str) -> list[str]:
        if id == "missing":
            raise StoreError("commit missing is not in the repository")
        return ["missing"]

    with pytest.raises(StoreError, match="missing"):
        closure(["a"], edges)

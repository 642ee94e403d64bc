"""The probe set a commit stores: its objects are written with the commit, or not at all."""

from types import SimpleNamespace

import pytest
import torch

from rewardkit.errors import StoreError
from rewardkit.store.probe import PROBE_MAX, load_probe, make_probe


def _pairs(n):
    return [SimpleNamespace(prompt=f"p{i}", chosen=f"yes {i}", rejected=f"no {i}!") for i in range(n)]


def _reward_of(pairs):
    return {(p.prompt, r): float(i) + (0.5 if r == p.chosen else 0.0) for i, p in enumerate(pairs)
            for r in (p.chosen, p.rejected)}


def test_make_probe_keeps_the_first_pairs_in_order_with_their_rewards():
    pairs = _pairs(PROBE_MAX + 5)
    probe = make_probe(pairs, _reward_of(pairs))
    assert len(probe.pairs) == PROBE_MAX and probe.pairs[0] == {"prompt": "p0", "chosen": "yes 0", "rejected": "no 0!"}
    assert probe.rewards.dtype == torch.float32 and probe.rewards.shape == (PROBE_MAX, 2)
    assert probe.rewards[3].tolist() == [3.5, 3.0]
    assert probe.lengths[3].tolist() == [5, 5]


def test_probe_objects_are_written_with_the_commit_and_load_back(repo, tiny_tensors):
    pairs = _pairs(3)
    probe = make_probe(pairs, _reward_of(pairs))
    commit = repo.commit_tensors(tiny_tensors(), {}, "probed", params={"probe": probe.param()},
                                 extra_objects=[probe.pairs_bytes(), probe.rewards])
    param = commit.params["probe"]
    assert repo.objects.has(param["pairs"]) and repo.objects.has(param["rewards"]) and param["n"] == 3
    loaded = load_probe(repo.objects, commit)
    assert loaded.pairs == probe.pairs and torch.equal(loaded.rewards, probe.rewards)


def test_a_failed_commit_leaves_no_probe_object(repo, tiny_tensors, snapshot, monkeypatch):
    repo.commit_tensors(tiny_tensors(), {}, "base")
    before = snapshot(repo)
    pairs = _pairs(3)
    probe = make_probe(pairs, _reward_of(pairs))

    def fail(*args, **kwargs):
        raise StoreError("the branch moved")

    monkeypatch.setattr(repo.commits, "add", fail)
    with pytest.raises(StoreError, match="branch moved"):
        repo.commit_tensors(tiny_tensors(1), {}, "probed", params={"probe": probe.param()},
                            extra_objects=[probe.pairs_bytes(), probe.rewards])
    assert snapshot(repo) == before
    assert not repo.objects.has(probe.param()["pairs"]) and not repo.objects.has(probe.param()["rewards"])


def test_a_damaged_probe_is_a_store_error(repo, tiny_tensors):
    pairs = _pairs(2)
    probe = make_probe(pairs, _reward_of(pairs))
    lying = repo.commit_tensors(tiny_tensors(), {}, "n lies", params={"probe": probe.param() | {"n": 5}},
                                extra_objects=[probe.pairs_bytes(), probe.rewards])
    with pytest.raises(StoreError, match="damaged probe"):
        load_probe(repo.objects, lying)
    missing = repo.commit_tensors(tiny_tensors(), {}, "objects missing", params={"probe": probe.param()})
    missing_ids = [probe.param()["rewards"]]
    assert repo.objects.has(missing_ids[0])  # stored by the first commit: delete it to damage both
    path = repo.objects.path(missing_ids[0])
    path.chmod(0o644)
    path.unlink()
    with pytest.raises(StoreError, match="missing"):
        load_probe(repo.objects, missing)


def test_a_commit_without_probe_has_none(repo, tiny_tensors):
    assert load_probe(repo.objects, repo.commit_tensors(tiny_tensors(), {}, "plain")) is None


def test_gc_keeps_a_commits_probe_objects_and_fsck_finds_nothing_wrong(repo, tiny_tensors):
    from rewardkit.store.fsck import fsck
    from rewardkit.store.gc import gc

    pairs = _pairs(3)
    probe = make_probe(pairs, _reward_of(pairs))
    commit = repo.commit_tensors(tiny_tensors(), {}, "probed", params={"probe": probe.param()},
                                 extra_objects=[probe.pairs_bytes(), probe.rewards])
    report = gc(repo, grace_s=0)
    assert report.removed_objects == []
    assert load_probe(repo.objects, commit).pairs == probe.pairs
    assert fsck(repo).ok

"""Three-way merge in the store: merge-base, planning, streaming writes, refusals, fast-forward."""

from __future__ import annotations

import itertools
import json
import weakref

import pytest
import torch

from rewardkit.errors import RefError, StoreError
from rewardkit.store import Repository
from rewardkit.store.merge import commit_merge, fast_forward, merge_base, plan_merge
from rewardkit.store.objects import ObjectStore

pytestmark = pytest.mark.backends()  # each test's `repo` on SQLite, then on PostgreSQL

FILES = {"config.json": b'{"model_type": "tiny", "hidden_size": 4}\n', "tokenizer/vocab.txt": b"[PAD]\nhello\n"}


def base_tensors() -> dict[str, torch.Tensor]:
    return {
        "embed.weight": torch.tensor([[1.0, 2.0], [3.0, 4.0]]),
        "head.weight": torch.tensor([0.5, -0.5], dtype=torch.bfloat16),
        "head.bias": torch.zeros(1),
        "position_ids": torch.arange(4),
    }


def commit(repo: Repository, branch: str, message: str, files: dict[str, bytes] | None = None,
           **changes: torch.Tensor | None) -> str:
    """Commit the branch's tip with some tensors changed (``None`` deletes one)."""
    tip = repo.branches().get(branch)
    tensors = repo.load_tensors(tip) if tip else base_tensors()
    previous = {n: repo.objects.get_bytes(i) for n, i in repo.manifest(tip).files.items()} if tip else dict(FILES)
    for name, value in changes.items():
        name = name.replace("__", ".")
        if value is None:
            tensors.pop(name)
        else:
            tensors[name] = value
    return repo.commit_tensors(tensors, previous | (files or {}), message, branch=branch).id


@pytest.fixture
def snapshot(snapshot):
    """The conftest snapshot plus every ref, every reflog entry and HEAD: what a refused merge must not change."""
    def everything(repo: Repository) -> tuple[object, ...]:
        return snapshot(repo), repo.all_refs(), repo.reflog(), (repo.path / "HEAD").read_bytes()
    return everything


@pytest.fixture
def forked(repo: Repository) -> tuple[Repository, str]:
    """main: base; branches a and b forked from it."""
    base = commit(repo, "main", "base")
    repo.create_branch("a", base)
    repo.create_branch("b", base)
    return repo, base


def test_merge_base_on_a_branched_history(forked) -> None:
    repo, base = forked
    a1 = commit(repo, "a", "a1", embed__weight=torch.ones(2, 2))
    a2 = commit(repo, "a", "a2", head__bias=torch.ones(1))
    b1 = commit(repo, "b", "b1", head__bias=torch.full((1,), 2.0))
    m1 = commit(repo, "main", "m1", embed__weight=torch.zeros(2, 2))
    assert merge_base(repo, [a2, b1]) == base
    assert merge_base(repo, [a2, b1, m1]) == base
    assert merge_base(repo, [a1, a2]) == a1  # on a line: the older one
    assert merge_base(repo, [a2, a2]) == a2
    root = repo.commit_tensors(base_tensors(), FILES, "unrelated", branch="other").id
    assert merge_base(repo, [a2, root]) is None


def test_merge_base_refuses_a_criss_cross_history(forked) -> None:
    repo, base = forked
    a1 = commit(repo, "a", "a1", embed__weight=torch.ones(2, 2))
    b1 = commit(repo, "b", "b1", head__bias=torch.ones(1))
    manifest_a, manifest_b = repo.resolve(a1).manifest_id, repo.resolve(b1).manifest_id
    x = repo.commit_manifest(manifest_a, "merge b into a", parents=[a1, b1], branch="a").id
    y = repo.commit_manifest(manifest_b, "merge a into b", parents=[b1, a1], branch="b").id
    with pytest.raises(StoreError, match=rf"{a1[:10]}, {b1[:10]}|{b1[:10]}, {a1[:10]}.*criss-cross"):
        merge_base(repo, [x, y])


def test_one_side_and_both_side_changes(forked, monkeypatch) -> None:
    repo, base = forked
    a = commit(repo, "a", "a", embed__weight=torch.tensor([[3.0, 2.0], [3.0, 0.0]]), head__bias=torch.ones(1))
    b = commit(repo, "b", "b", embed__weight=torch.tensor([[1.0, 6.0], [5.0, 4.0]]))
    commit_manifest_reads = []
    real_get = ObjectStore.get_tensor
    monkeypatch.setattr(ObjectStore, "get_tensor",
                        lambda self, id, **kw: commit_manifest_reads.append(id) or real_get(self, id, **kw))
    repo.switch("a")
    plan = plan_merge(repo, ["b"])
    assert commit_manifest_reads == []  # planning reads no tensor
    merged = commit_merge(repo, plan)
    assert len(commit_manifest_reads) == 2  # embed.weight on a and on b (a mean needs no base); nothing else
    ma, mb, m0, mm = (repo.manifest(c) for c in (a, b, base, merged))
    got = repo.load_tensors(merged.id)
    # both changed embed.weight: the mean of the two, computed by hand
    assert torch.equal(got["embed.weight"], torch.tensor([[2.0, 4.0], [4.0, 2.0]]))
    assert mm.tensors["head.bias"] == ma.tensors["head.bias"]  # changed on a only: a's object
    assert mm.tensors["head.weight"] == m0.tensors["head.weight"]  # unchanged: the base's object
    assert mm.tensors["position_ids"] == mb.tensors["position_ids"] == m0.tensors["position_ids"]
    assert mm.files == m0.files
    assert merged.parents == [a, b] and repo.branches()["a"] == merged.id
    recipe = merged.params["merge"]
    assert recipe["strategy"] == "average" and recipe["base"] == base and recipe["branch"] == "a"
    assert recipe["sides"] == [{"ref": "a", "commit": a}, {"ref": "b", "commit": b}]
    assert recipe["tensors"] == {"kept": 2, "taken": 1, "combined": 1, "deleted": 0}
    assert merged.message == "merge b into a (average)"
    assert repo.reflog("a")[-1].message == "merge: merge b into a (average)"
    assert recipe["density"] is None
    assert plan_merge(repo, [base], strategy="ties").kind == "up-to-date"
    repo.reset(a)
    assert plan_merge(repo, ["b"], strategy="ties").recipe()["density"] == 0.2  # the default, recorded


def test_three_branches_ties_weights_and_lambda_are_recorded(forked) -> None:
    repo, base = forked
    repo.create_branch("c", base)
    commit(repo, "a", "a", head__bias=torch.tensor([3.0]))
    commit(repo, "b", "b", head__bias=torch.tensor([-1.0]))
    commit(repo, "c", "c", head__bias=torch.tensor([2.0]))
    repo.switch("a")
    # hand: deltas 3, -1, 2; density 1 keeps all; sum 4 elects +; weights 1,1,2 -> (3 + 2*2)/(1+2) = 7/3; λ 0.5
    merged = commit_merge(repo, plan_merge(repo, ["b", "c"], strategy="ties", weights=[1, 1, 2], lam=0.5,
                                           density=1.0), "ties of three")
    assert repo.load_tensors(merged.id)["head.bias"].item() == pytest.approx(7 / 6)
    assert len(merged.parents) == 3
    recipe = merged.params["merge"]
    assert (recipe["weights"], recipe["lambda"], recipe["density"], recipe["seed"]) == ([1, 1, 2], 0.5, 1.0, 0)


def test_fast_forward_moves_the_branch_without_a_commit(forked) -> None:
    repo, base = forked
    a = commit(repo, "a", "a", head__bias=torch.ones(1))
    n = repo.commits.count()
    plan = plan_merge(repo, ["a"])
    assert plan.kind == "fast-forward" and plan.target == a
    fast_forward(repo, plan)
    assert repo.branches()["main"] == a and repo.commits.count() == n
    assert repo.reflog("main")[-1].message == "merge a: Fast-forward"


def test_already_merged_changes_nothing(forked, snapshot) -> None:
    repo, base = forked
    a = commit(repo, "a", "a", head__bias=torch.ones(1))
    repo.switch("a")
    before = snapshot(repo)
    assert plan_merge(repo, ["main"]).kind == "up-to-date"  # main (the base) is an ancestor of a
    assert plan_merge(repo, [a]).kind == "up-to-date"  # merging HEAD itself
    assert snapshot(repo) == before


def _refused(repo: Repository, snapshot, refs: list[str], match: str, **kwargs) -> None:
    before = snapshot(repo)
    with pytest.raises(StoreError, match=match):
        commit_merge(repo, plan_merge(repo, refs, **kwargs))
    assert snapshot(repo) == before


def test_refusals_leave_the_repository_unchanged(forked, snapshot) -> None:
    repo, base = forked
    commit(repo, "a", "a", embed__weight=torch.ones(2, 2), position_ids=torch.tensor([0, 1, 2, 4]))
    commit(repo, "b", "b", embed__weight=torch.ones(2, 3), position_ids=torch.tensor([0, 1, 2, 5]))
    repo.switch("a")
    _refused(repo, snapshot, ["b"], r"tensor 'embed.weight' is F32 \[2, 3\] on b but F32 \[2, 2\] at the merge-base")
    commit(repo, "b", "b2", embed__weight=torch.ones(2, 2).double())
    _refused(repo, snapshot, ["b"], r"tensor 'embed.weight' is F64 \[2, 2\] on b")
    commit(repo, "b", "b3", embed__weight=torch.zeros(2, 2))
    _refused(repo, snapshot, ["b"], r"integer tensor 'position_ids' \(I64\) differs on HEAD \(a\) and b")
    _refused(repo, snapshot, ["nope"], "unknown ref 'nope'")
    root = repo.commit_tensors(base_tensors(), FILES, "unrelated", branch="other").id
    _refused(repo, snapshot, ["other"], r"refusing to merge unrelated histories: a and other have no common ancestor")
    assert root


def test_architecture_tokenizer_and_file_conflicts(forked, snapshot) -> None:
    repo, base = forked
    commit(repo, "a", "a", {"notes.txt": b"from a"}, head__bias=torch.ones(1))
    commit(repo, "b", "b", {"config.json": b'{"model_type": "other", "hidden_size": 4}'})
    repo.switch("a")
    _refused(repo, snapshot, ["b"], r'different architectures: config.json has model_type="other" on b but "tiny"')
    commit(repo, "b", "b2", {"config.json": FILES["config.json"], "tokenizer/vocab.txt": b"[PAD]\nbye\n"})
    _refused(repo, snapshot, ["b"], "different tokenizers: tokenizer/vocab.txt differs between HEAD \\(a\\) and b")
    commit(repo, "b", "b3", {"tokenizer/vocab.txt": FILES["tokenizer/vocab.txt"], "notes.txt": b"from b"})
    _refused(repo, snapshot, ["b"], r"file notes.txt was changed differently on HEAD \(a\) and b; use --strategy ours")
    ours = commit_merge(repo, plan_merge(repo, ["b"], strategy="ours"))
    assert repo.objects.get_bytes(repo.manifest(ours).files["notes.txt"]) == b"from a"


def test_ours_and_theirs_resolve_tensor_conflicts_without_reading(forked) -> None:
    repo, base = forked
    a = commit(repo, "a", "a", embed__weight=torch.ones(2, 2), position_ids=torch.tensor([0, 1, 2, 4]))
    b = commit(repo, "b", "b", embed__weight=torch.ones(2, 3), position_ids=None)
    repo.switch("a")
    merged = commit_merge(repo, plan_merge(repo, ["b"], strategy="theirs"))
    assert repo.manifest(merged).tensors == repo.manifest(b).tensors
    repo.reset(a)
    merged = commit_merge(repo, plan_merge(repo, ["b"], strategy="ours"))
    assert repo.manifest(merged).tensors == repo.manifest(a).tensors
    with pytest.raises(StoreError, match="theirs needs exactly one branch"):
        plan_merge(repo, ["b", "main"], strategy="theirs")


def test_deleted_on_one_side_and_changed_on_the_other_is_refused(forked, snapshot) -> None:
    repo, base = forked
    commit(repo, "a", "a", head__bias=None)
    commit(repo, "b", "b", head__bias=torch.ones(1))
    repo.switch("a")
    _refused(repo, snapshot, ["b"], r"tensor 'head.bias' was deleted on HEAD \(a\) but changed on b")


def test_config_json_merges_key_by_key(forked, snapshot) -> None:
    repo, base = forked
    config = json.loads(FILES["config.json"])
    commit(repo, "a", "a", {"config.json": json.dumps(config | {"label": "a"}).encode()})
    commit(repo, "b", "b", {"config.json": json.dumps(config | {"dropout": 0.1}).encode()})
    repo.switch("a")
    merged = commit_merge(repo, plan_merge(repo, ["b"]))
    assert json.loads(repo.objects.get_bytes(repo.manifest(merged).files["config.json"])) == \
        config | {"label": "a", "dropout": 0.1}
    commit(repo, "b", "b2", {"config.json": json.dumps(config | {"dropout": 0.1, "label": "b"}).encode()})
    _refused(repo, snapshot, ["b"], r"file config.json: key 'label' was changed differently on HEAD \(a\) and b")


def test_a_failed_evaluation_deletes_the_merged_objects(forked, snapshot) -> None:
    repo, base = forked
    commit(repo, "a", "a", head__bias=torch.ones(1))
    commit(repo, "b", "b", head__bias=torch.full((1,), 3.0))
    repo.switch("a")
    before = snapshot(repo)

    def evaluate(draft):
        assert repo.load_tensors(draft)["head.bias"].item() == 2.0  # the draft's model is readable
        raise RuntimeError("evaluation failed")

    with pytest.raises(RuntimeError):
        commit_merge(repo, plan_merge(repo, ["b"]), evaluate=evaluate)
    assert snapshot(repo) == before
    merged = commit_merge(repo, plan_merge(repo, ["b"]), evaluate=lambda draft: {"x/accuracy": 0.5})
    assert merged.metrics == {"x/accuracy": 0.5}


def test_merge_refuses_when_the_branch_moved_since_planning(forked, snapshot) -> None:
    repo, base = forked
    commit(repo, "a", "a", head__bias=torch.ones(1))
    commit(repo, "b", "b", head__bias=torch.full((1,), 3.0))
    repo.switch("a")
    plan = plan_merge(repo, ["b"])
    commit(repo, "a", "a moved", embed__weight=torch.ones(2, 2))
    before = snapshot(repo)
    with pytest.raises(StoreError, match="moved"):
        commit_merge(repo, plan)
    assert snapshot(repo) == before


def test_merge_streams_one_tensor_at_a_time(repo, monkeypatch) -> None:
    big = {f"layer{i}__weight": torch.full((64, 64), float(i)) for i in range(12)}
    base = commit(repo, "main", "base", **big)
    for branch, shift in (("a", 1.0), ("b", 3.0)):
        repo.create_branch(branch, base)
        commit(repo, branch, branch, **{k: v + shift for k, v in big.items()})
    repo.switch("a")
    live: set[int] = set()
    peak, keys = [0], itertools.count()
    real_get = ObjectStore.get_tensor

    def counting_get(self, id, **kw):
        tensor = real_get(self, id, **kw)
        key = next(keys)
        live.add(key)
        peak[0] = max(peak[0], len(live))
        weakref.finalize(tensor, live.discard, key)
        return tensor

    monkeypatch.setattr(ObjectStore, "get_tensor", counting_get)
    merged = commit_merge(repo, plan_merge(repo, ["b"], strategy="task-arithmetic"))
    assert peak[0] <= 3  # the base and two sides of one tensor, never a model per side
    assert len(live) == 0
    assert torch.equal(repo.load_tensors(merged.id)["layer5.weight"], torch.full((64, 64), 5.0 + 1 + 3))


def test_bad_strategy_settings_are_refused_before_anything(forked) -> None:
    repo, base = forked
    with pytest.raises(StoreError, match="--weights has 3 values for 2 models"):
        plan_merge(repo, ["a"], weights=[1, 1, 1])
    with pytest.raises(StoreError, match="unknown merge strategy"):
        plan_merge(repo, ["a"], strategy="slerp")
    with pytest.raises(RefError):
        plan_merge(repo, ["no-such-branch"])


def test_adapters_on_one_base_merge_as_their_effective_weights(repo, tmp_path, snapshot) -> None:
    from test_store_adapters import adapter_on, tiny
    from transformers import AutoTokenizer

    from rewardkit.models import default_backbone
    from rewardkit.store.adapters import commit_adapter, effective_tensors

    tokenizer = AutoTokenizer.from_pretrained(default_backbone())
    adapter_on(tiny("bert", tokenizer), tmp_path / "a", seed=1)
    adapter_on(tiny("bert", tokenizer), tmp_path / "b", seed=2)
    base = repo.commit_dir(tmp_path / "a" / "base", "base")
    adapters = {}
    for name in ("a", "b"):
        repo.switch(name, create=True, start=base.id)
        adapters[name] = commit_adapter(repo, tmp_path / name / "adapter", base, name)
    merged = commit_merge(repo, plan_merge(repo, ["a"]))  # on b: the mean of the two adapted models
    ea, eb = (dict(effective_tensors(repo, adapters[n])) for n in ("a", "b"))
    got, at_base = repo.load_tensors(merged.id), repo.load_tensors(base.id)
    assert got.keys() == at_base.keys() and "adapter" not in merged.params
    changed = [n for n in got if not torch.equal(ea[n], at_base[n])]
    assert changed and all(torch.allclose(got[n], (ea[n] + eb[n]) / 2, atol=1e-7) for n in changed)
    assert all(torch.equal(got[n], at_base[n]) for n in got if n not in changed)
    assert "adapter_config.json" not in repo.manifest(merged).files  # a full model
    assert merged.params["merge"]["tensors"]["combined"] == len(changed)


def test_an_adapter_merged_with_a_full_model_takes_its_effective_tensors(repo, tmp_path) -> None:
    from test_store_adapters import adapter_on, tiny
    from transformers import AutoTokenizer

    from rewardkit.models import default_backbone
    from rewardkit.store.adapters import commit_adapter, effective_tensors

    adapter_on(tiny("bert", AutoTokenizer.from_pretrained(default_backbone())), tmp_path, seed=1)
    base = repo.commit_dir(tmp_path / "base", "base")
    repo.switch("lora", create=True, start=base.id)
    adapter = commit_adapter(repo, tmp_path / "adapter", base, "adapter")
    repo.switch("main")
    pooler = "bert.pooler.dense.bias"
    full = repo.commit_tensors(repo.load_tensors(base.id) | {pooler: torch.ones(16)},
                               {n: repo.objects.get_bytes(i) for n, i in repo.manifest(base).files.items()}, "pooler")
    merged = commit_merge(repo, plan_merge(repo, ["lora"]))
    got, effective = repo.load_tensors(merged.id), dict(effective_tensors(repo, adapter))
    assert torch.equal(got[pooler], torch.ones(16))  # from main
    assert all(torch.equal(got[n], effective[n]) for n in got if n != pooler)  # the adapter's model, stored
    assert merged.parents == [full.id, adapter.id]


def test_dare_merges_are_reproducible(forked) -> None:
    repo, base = forked
    a = commit(repo, "a", "a", embed__weight=torch.ones(2, 2))
    commit(repo, "b", "b", embed__weight=torch.full((2, 2), 3.0))
    repo.switch("a")
    first = commit_merge(repo, plan_merge(repo, ["b"], strategy="dare", density=0.5, seed=7))
    repo.reset(a)
    again = commit_merge(repo, plan_merge(repo, ["b"], strategy="dare", density=0.5, seed=7))
    assert first.manifest_id == again.manifest_id


def test_tokenizer_config_differing_only_in_max_length_is_one_tokenizer(forked, snapshot) -> None:
    """train records its max_length in tokenizer_config.json: runs at other lengths still merge (key by key)."""
    repo, base = forked
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True}
    repo.switch("main")
    commit(repo, "main", "main", {"tokenizer_config.json": json.dumps(config | {"model_max_length": 512}).encode()})
    repo.create_branch("c", "main")
    repo.create_branch("d", "main")
    commit(repo, "c", "c at 128", {"tokenizer_config.json": json.dumps(config | {"model_max_length": 128}).encode()},
           head__bias=torch.ones(1))
    commit(repo, "d", "d at 128", {"tokenizer_config.json": json.dumps(config | {"model_max_length": 128}).encode()},
           head__bias=torch.full((1,), 3.0))
    merged = commit_merge(repo, plan_merge(repo, ["c", "d"]))  # HEAD (main) at 512, the sides at 128
    files = repo.manifest(merged).files
    assert json.loads(repo.objects.get_bytes(files["tokenizer_config.json"]))["model_max_length"] == 128
    assert torch.equal(repo.load_tensors(merged)["head.bias"], torch.full((1,), 2.0))
    commit(repo, "c", "c at 64", {"tokenizer_config.json": json.dumps(config | {"model_max_length": 64}).encode()})
    repo.switch("c")
    _refused(repo, snapshot, ["d"], r"file tokenizer_config.json: key 'model_max_length' was changed differently")
    commit(repo, "d", "d lower", {"tokenizer_config.json": json.dumps(config | {"do_lower_case": False}).encode()})
    _refused(repo, snapshot, ["d"], "different tokenizers: tokenizer_config.json differs between HEAD")

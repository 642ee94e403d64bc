"""Model-aware diff at the store level: params, metrics by set, tensor statistics."""

import json
import math

import pytest
import torch

from rewardkit.errors import RefError, StoreError
from rewardkit.store.diff import UNGROUPED, diff_commits, flatten, metric_rows, tensor_stats


def _commit(repo, tensors, message="v", **kwargs):
    files = {"config.json": json.dumps(kwargs.pop("config", {"model_type": "tiny"})).encode()}
    return repo.commit_tensors(tensors, files, message, **kwargs)


def test_tensor_stats_match_values_computed_by_hand():
    a = torch.tensor([3.0, 4.0])  # ‖A‖ = 5
    b = torch.tensor([3.0, 0.0])  # B − A = [0, −4]: ‖B − A‖ = 4; ⟨A,B⟩ = 9, ‖B‖ = 3
    s = tensor_stats(a, b)
    assert s.norm_a == 5.0 and s.norm_diff == 4.0
    assert s.relative_l2 == pytest.approx(0.8)
    assert s.cosine == pytest.approx(9 / 15)
    assert s.max_abs_diff == 4.0


def test_tensor_stats_in_bf16_and_int_are_exact_in_float64():
    a = torch.tensor([[1.0, -2.0], [0.5, 0.0]], dtype=torch.bfloat16)
    b = torch.tensor([[1.0, -2.0], [0.5, 0.25]], dtype=torch.bfloat16)
    s = tensor_stats(a, b)
    assert s.norm_a == pytest.approx(math.sqrt(1 + 4 + 0.25))
    assert s.norm_diff == 0.25 and s.max_abs_diff == 0.25
    assert s.relative_l2 == pytest.approx(0.25 / math.sqrt(5.25))
    ints = tensor_stats(torch.arange(4), torch.tensor([0, 1, 2, 7]))
    assert ints.max_abs_diff == 4.0 and ints.norm_diff == 4.0 and ints.norm_a == math.sqrt(14)


def test_tensor_stats_of_a_zero_tensor_is_inf_not_nan():
    s = tensor_stats(torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]))
    assert s.relative_l2 == math.inf and s.cosine is None and s.norm_a == 0.0
    same_zero = tensor_stats(torch.zeros(3), torch.zeros(3))
    assert same_zero.relative_l2 == 0.0 and same_zero.cosine is None


def test_tensor_stats_in_chunks_equal_one_pass(monkeypatch):
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1000, generator=g), torch.randn(1000, generator=g)
    whole = tensor_stats(a, b)
    monkeypatch.setattr("rewardkit.store.diff.CHUNK", 7)
    chunked = tensor_stats(a, b)
    assert chunked.norm_diff == pytest.approx(whole.norm_diff, rel=1e-12)
    assert chunked.cosine == pytest.approx(whole.cosine, rel=1e-12)
    assert chunked.max_abs_diff == whole.max_abs_diff
    expected = float(torch.linalg.vector_norm(b.double() - a.double()) / torch.linalg.vector_norm(a.double()))
    assert chunked.relative_l2 == pytest.approx(expected, rel=1e-12)


def test_diff_classifies_every_tensor_and_counts_bytes(repo):
    a = {"keep": torch.ones(4), "change": torch.tensor([3.0, 4.0]), "gone": torch.zeros(2),
         "retype": torch.ones(2)}
    b = {"keep": torch.ones(4), "change": torch.tensor([3.0, 0.0]), "new": torch.ones(3, dtype=torch.float64),
         "retype": torch.ones(2, dtype=torch.bfloat16)}
    ca, cb = _commit(repo, a), _commit(repo, b)
    d = diff_commits(repo, ca.id, cb.id)
    status = {t.name: t.status for t in d.tensors}
    assert status == {"keep": "unchanged", "change": "changed", "gone": "removed", "retype": "incompatible",
                      "new": "added"}
    assert d.summary.counts == {"unchanged": 1, "changed": 1, "incompatible": 1, "added": 1, "removed": 1}
    assert d.summary.bytes_a == 16 + 8 + 8 + 8 and d.summary.bytes_b == 16 + 8 + 24 + 4
    assert d.summary.bytes_differ == 8 + 24 + 4  # changed F32[2], added F64[3], incompatible BF16[2]
    assert d.summary.bytes_removed == 8
    change = next(t for t in d.tensors if t.name == "change")
    assert change.stats.relative_l2 == pytest.approx(0.8) and change.stats.max_abs_diff == 4.0
    assert [t.name for t in d.top] == ["change"]


def test_unchanged_tensors_are_never_read(repo, monkeypatch):
    shared = {f"layer{i}": torch.randn(8, 8) for i in range(4)}
    ca = _commit(repo, shared | {"head": torch.ones(2)})
    cb = _commit(repo, shared | {"head": torch.tensor([1.0, 3.0])})
    read = []
    for method in ("get_tensor", "get_bytes"):
        real = getattr(repo.objects, method)
        monkeypatch.setattr(repo.objects, method, lambda id, _real=real, **kw: read.append(id) or _real(id, **kw))
    d = diff_commits(repo, ca, cb)
    assert d.summary.counts["unchanged"] == 4 and d.summary.counts["changed"] == 1
    assert d.top[0].name == "head" and d.top[0].stats.norm_diff == 2.0
    heads = {repo.manifest(c).tensors["head"].id for c in (ca, cb)}
    manifests = {ca.manifest_id, cb.manifest_id}
    assert set(read) <= heads | manifests and heads <= set(read)  # payloads of shared layers: never


def test_top_k_orders_by_relative_change(repo):
    a = {"small": torch.ones(4), "large": torch.ones(4), "mid": torch.ones(4), "zero": torch.zeros(2)}
    b = {"small": torch.ones(4) * 1.01, "large": torch.ones(4) * 3, "mid": torch.ones(4) * 1.5,
         "zero": torch.ones(2)}
    d = diff_commits(repo, _commit(repo, a), _commit(repo, b), top_k=3)
    assert [t.name for t in d.top] == ["zero", "large", "mid"]  # inf first
    js = d.to_dict()
    zero = next(t for t in js["tensors"] if t["name"] == "zero")
    assert zero["stats"]["relative_l2"] is None and zero["stats"]["norm_a"] == 0.0
    json.dumps(js, allow_nan=False)  # valid JSON: no NaN or Infinity


def test_params_config_and_files_diff(repo):
    t = {"w": torch.ones(2)}
    ca = _commit(repo, t, params={"config": {"learning_rate": 1e-5, "seed": 0}, "data": ["a.jsonl"]},
                 backbone="bert", config={"model_type": "tiny", "hidden": 16})
    cb = _commit(repo, t, params={"config": {"learning_rate": 2e-5, "seed": 0}, "data": ["a.jsonl", "b.jsonl"]},
                 backbone="bert", config={"model_type": "tiny", "hidden": 32, "extra": {"x": 1}})
    d = diff_commits(repo, ca, cb)
    assert [(c.key, c.a, c.b) for c in d.params] == [
        ("config.learning_rate", 1e-5, 2e-5), ("data", ["a.jsonl"], ["a.jsonl", "b.jsonl"])]
    assert [(c.key, c.a, c.b) for c in d.model_config] == [("extra.x", None, 1), ("hidden", 16, 32)]
    assert d.files == {"config.json": "changed"}
    assert d.summary.counts["unchanged"] == 1 and d.summary.bytes_differ == 0


def test_metrics_grouped_by_evaluation_set():
    a = {"train/loss": 0.5, "validation/accuracy": 0.6, "validation/ece": 0.1, "test/accuracy": 0.55,
         "test/hh-rlhf:x.jsonl/accuracy": 0.5, "PandaLM.jsonl/accuracy": 0.4, "hand": 1}
    b = {"train/loss": 0.4, "validation/accuracy": 0.7, "validation/ece": 0.1, "test/accuracy": 0.65,
         "PandaLM.jsonl/accuracy": 0.5, "PandaLM.jsonl/n_pairs": 10}
    rows = metric_rows(a, b)
    assert [(r.set, r.metric) for r in rows] == [
        ("train", "loss"), ("validation", "accuracy"), ("validation", "ece"), ("test", "accuracy"),
        ("test", "hh-rlhf:x.jsonl/accuracy"), ("PandaLM.jsonl", "accuracy"), ("PandaLM.jsonl", "n_pairs"),
        (UNGROUPED, "hand")]
    by = {(r.set, r.metric): r for r in rows}
    assert by["validation", "accuracy"].change == pytest.approx(0.1)
    assert by["validation", "ece"].change == 0.0
    assert by["test", "hh-rlhf:x.jsonl/accuracy"].b is None and by["test", "hh-rlhf:x.jsonl/accuracy"].change is None
    single = metric_rows(a)
    assert all(r.b is None and r.change is None for r in single) and len(single) == len(a)


def test_flatten_keeps_lists_and_empty_dicts_as_values():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1, 2], "e": {}}


def test_bad_ref_is_a_ref_error(repo):
    c = _commit(repo, {"w": torch.ones(2)})
    with pytest.raises(RefError):
        diff_commits(repo, c.id, "nope")


def test_a_corrupt_changed_tensor_is_refused(repo):
    ca = _commit(repo, {"w": torch.ones(4)})
    cb = _commit(repo, {"w": torch.tensor([1.0, 2.0, 3.0, 4.0])})
    path = repo.objects.path(repo.manifest(cb).tensors["w"].id)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes: only a re-hash finds it
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt"):
        diff_commits(repo, ca, cb)


def test_a_nan_change_ranks_first(repo):
    a = {"big": torch.ones(2), "nan": torch.ones(2)}
    b = {"big": torch.ones(2) * 5, "nan": torch.tensor([1.0, float("nan")])}
    d = diff_commits(repo, _commit(repo, a), _commit(repo, b))
    assert [t.name for t in d.top] == ["nan", "big"]


def _tiny_adapter(folder, seed):
    """A tiny BERT saved to ``folder/base`` and, with random LoRA factors and head, to ``folder/adapter``."""
    import transformers

    from rewardkit.models import TextRewardModel, default_backbone
    from rewardkit.models.lora import add_lora

    tokenizer = transformers.AutoTokenizer.from_pretrained(default_backbone())
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, num_labels=1, hidden_size=16,
                                     num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                     pad_token_id=tokenizer.pad_token_id)
    model = TextRewardModel(transformers.BertForSequenceClassification(config), tokenizer)
    model.save(folder / "base")
    add_lora(model, r=2)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.backbone.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    model.save(folder / "adapter")


def test_an_adapter_diffs_as_the_model_it_means(repo, tmp_path):
    from rewardkit.store.adapters import commit_adapter, effective_tensors

    _tiny_adapter(tmp_path / "one", seed=1)
    _tiny_adapter(tmp_path / "two", seed=2)
    base = repo.commit_dir(tmp_path / "one" / "base", "base")
    one = commit_adapter(repo, tmp_path / "one" / "adapter", base, "adapter 1")
    two = commit_adapter(repo, tmp_path / "two" / "adapter", base, "adapter 2")
    base_tensors, merged = repo.load_tensors(base.id), dict(effective_tensors(repo, one))

    d = diff_commits(repo, base, one)
    changed = {n for n in merged if not torch.equal(merged[n], base_tensors[n])}
    assert {t.name for t in d.tensors if t.status == "changed"} == changed
    assert {n.split(".")[-2] for n in changed} == {"query", "value", "classifier"}
    assert d.summary.counts == {"unchanged": len(merged) - len(changed), "changed": len(changed), "incompatible": 0,
                                "added": 0, "removed": 0}
    for t in d.tensors:
        if t.status == "changed":
            expected = tensor_stats(base_tensors[t.name], merged[t.name])
            assert t.stats == expected
            assert t.b.id is None or t.name.startswith("classifier")  # LoRA targets are computed
    assert d.files == {} and d.model_config == []  # the adapter means the base's config and tokenizer

    same = diff_commits(repo, one, one)
    assert same.summary.counts["changed"] == 0 and same.summary.counts["unchanged"] == len(merged)
    other = diff_commits(repo, one, two)
    assert {t.name for t in other.tensors if t.status == "changed"} == changed


def test_at_most_two_tensors_are_in_memory_at_once(repo, monkeypatch):
    import weakref

    ca = _commit(repo, {f"t{i}": torch.full((64,), float(i)) for i in range(6)})
    cb = _commit(repo, {f"t{i}": torch.full((64,), float(i) + 1) for i in range(6)})
    alive, most = [], []
    real = repo.objects.get_tensor

    def spy(id, **kw):
        most.append(sum(ref() is not None for ref in alive))  # tensors still held when the next is read
        tensor = real(id, **kw)
        alive.append(weakref.ref(tensor))
        return tensor

    monkeypatch.setattr(repo.objects, "get_tensor", spy)
    d = diff_commits(repo, ca, cb)
    assert d.summary.counts["changed"] == 6 and len(most) == 12
    assert max(most) == 1  # A's tensor while B's is read; both dropped before the next pair

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
)

from rewardkit.store import Repository


def test_checkout_loads_in_transformers_unchanged(repo: Repository, tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=1,
    )
    model = BertForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path / "trained")
    commit = repo.commit_dir(tmp_path / "trained", "tiny bert", backbone="bert-tiny-random")

    out = repo.checkout(commit.id[:8], tmp_path / "checkout")
    loaded = AutoModelForSequenceClassification.from_pretrained(out).eval()

    reference = AutoModelForSequenceClassification.from_pretrained(tmp_path / "trained").eval()

    ids = torch.randint(0, 100, (3, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = loaded(input_ids=ids).logits
        # bit-identical to loading the original folder; the in-memory model differs in the
        # last float bits even for transformers' own save/load, so compare that one closely
        assert torch.equal(got, reference(input_ids=ids).logits)
        torch.testing.assert_close(got, model(input_ids=ids).logits)
    assert got.shape == (3, 1)
    assert (out / "config.json").read_bytes() == (tmp_path / "trained" / "config.json").read_bytes()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name

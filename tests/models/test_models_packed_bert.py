"""The packed BERT forward computes the rewards and gradients of the padded HF forward."""

from __future__ import annotations

import pytest
import torch
import transformers

from rewardkit.models import TextRewardModel, packed_bert
from rewardkit.models.packed_bert import sequence_classification_logits, supports
from rewardkit.models.text import set_pad_token

KERNELS = ["auto", "baddbmm", "sdpa"]

# Mixed lengths, one long enough to be truncated at max_length=96.
TEXTS = [
    ("", "Yes."),
    ("\n\nHuman: What is the capital of France?\n\nAssistant:", " Paris, on the Seine."),
    ("\n\nHuman: How do I make my neighbour's dog stop barking at night?\n\nAssistant:",
     " You could talk to your neighbour first: they may not know it barks while they sleep. "
     "If that does not help, a written note or the local council's noise service are next."),
    ("\n\nHuman: Tell me a long story about a dragon.\n\nAssistant:",
     " Once upon a time there was a dragon who lived in a cave above a small fishing village. " * 6),
]


def tiny_bert(vocab_size: int = 96, seed: int = 0, **overrides) -> transformers.BertForSequenceClassification:
    """A randomly initialised 3-layer BERT with a one-logit head, dropout off, in eval mode."""
    torch.manual_seed(seed)
    settings = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                    intermediate_size=48, max_position_embeddings=128, num_labels=1,
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = transformers.BertForSequenceClassification(transformers.BertConfig(**(settings | overrides)))
    with torch.no_grad():  # rewards of order 1, so that tolerances mean something
        model.classifier.weight.normal_(0.0, 1.0)
    return model.eval()


def random_batch(lengths: list[int], vocab_size: int = 96, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random ids ``(batch, max(lengths))`` and their attention mask."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(1, vocab_size, (n,), generator=gen)
        mask[row, :n] = 1
    return ids, mask


def hf_logits(backbone, ids, mask) -> torch.Tensor:
    return backbone(input_ids=ids, attention_mask=mask).logits


@pytest.fixture
def count_hf_calls():
    """``count_hf_calls(backbone)``: a counter of calls to the backbone's own (padded) forward."""
    handles = []

    def count(backbone) -> list[int]:
        calls = [0]
        handles.append(backbone.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1)))
        return calls

    yield count
    for handle in handles:
        handle.remove()


@pytest.fixture
def minilm_texts(minilm):
    """The real MiniLM on real texts of mixed length (max_length 96), right-padded."""
    ids, mask = minilm.pad([minilm.encode(p, r, max_length=96).input_ids for p, r in TEXTS])
    assert mask.sum(1).tolist()[0] < 10 and mask.sum(1).tolist()[-1] == 96
    return ids, mask


# ---------------------------------------------------------------- same rewards
@pytest.mark.parametrize("kernel", KERNELS)
def test_tiny_bert_logits_equal_hf_in_fp32(kernel):
    backbone = tiny_bert()
    ids, mask = random_batch([5, 17, 1, 40, 33, 2])
    assert supports(backbone, mask)
    with torch.no_grad():
        ours = sequence_classification_logits(backbone, ids, mask, attention=kernel)
        theirs = hf_logits(backbone, ids, mask)
    assert ours.shape == theirs.shape == (6, 1) and ours.dtype == torch.float32
    assert theirs.abs().max() > 0.1
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel", KERNELS)
def test_minilm_rewards_equal_hf_in_fp32(minilm, minilm_texts, kernel):
    ids, mask = minilm_texts
    with torch.no_grad():
        ours = sequence_classification_logits(minilm.backbone, ids, mask, attention=kernel)
        theirs = hf_logits(minilm.backbone, ids, mask)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kernel", KERNELS)
def test_bf16_autocast_rewards_match_within_bf16_rounding(minilm, minilm_texts, kernel):
    backbone = tiny_bert()
    ids, mask = random_batch([5, 17, 1, 40, 33, 2])
    for model, (i, m) in [(backbone, (ids, mask)), (minilm.backbone, minilm_texts)]:
        with torch.no_grad():
            exact = hf_logits(model, i, m)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                ours = sequence_classification_logits(model, i, m, attention=kernel).float()
                theirs = hf_logits(model, i, m).float()
        scale = exact.abs().max().item()
        # both are within a few bf16 steps (2**-8 relative) of the fp32 rewards, and of each other
        torch.testing.assert_close(ours, exact, atol=0.02 * scale, rtol=0.0)
        torch.testing.assert_close(ours, theirs, atol=0.02 * scale, rtol=0.0)


def test_text_reward_model_forward_takes_the_packed_path(minilm, minilm_texts, count_hf_calls):
    calls = count_hf_calls(minilm.backbone)
    with torch.no_grad():
        rewards = minilm(*minilm_texts)
        assert calls[0] == 0  # the padded HF forward did not run
        minilm.packed = False
        try:
            padded = minilm(*minilm_texts)
        finally:
            minilm.packed = True
    assert calls[0] == 1
    assert rewards.shape == (len(TEXTS),) and rewards.dtype == torch.float32
    torch.testing.assert_close(rewards, padded, atol=1e-5, rtol=1e-5)


def test_score_and_evaluation_take_the_packed_path(minilm, count_hf_calls):
    prompts, responses = [p for p, _ in TEXTS], [r for _, r in TEXTS]
    calls = count_hf_calls(minilm.backbone)
    packed = minilm.score(prompts, responses, max_length=96, batch_size=3)
    assert calls[0] == 0
    minilm.packed = False
    try:
        padded = minilm.score(prompts, responses, max_length=96, batch_size=3)
    finally:
        minilm.packed = True
    assert calls[0] > 0
    assert packed == pytest.approx(padded, abs=1e-5)


# ---------------------------------------------------------------- padding
@pytest.mark.parametrize("kernel", KERNELS)
def test_padding_never_changes_a_reward(kernel):
    backbone = tiny_bert()
    ids, mask = random_batch([7, 30, 12])
    with torch.no_grad():
        together = sequence_classification_logits(backbone, ids, mask, attention=kernel)
        for row, n in enumerate([7, 30, 12]):
            alone = sequence_classification_logits(backbone, ids[row : row + 1, :n], mask[row : row + 1, :n],
                                                   attention=kernel)
            extra = 9  # more pad columns than the batch needs
            wide_ids = torch.cat([ids[row : row + 1], torch.zeros(1, extra, dtype=torch.long)], dim=1)
            wide_mask = torch.cat([mask[row : row + 1], torch.zeros(1, extra, dtype=torch.long)], dim=1)
            wide = sequence_classification_logits(backbone, wide_ids, wide_mask, attention=kernel)
            torch.testing.assert_close(together[row], alone[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(wide[0], alone[0], atol=1e-6, rtol=0)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("kernel", KERNELS)
def test_gradients_equal_hf_for_every_parameter(kernel):
    backbone = tiny_bert(seed=3)
    backbone.train()  # dropout probabilities are 0, as the trainer sets them
    ids, mask = random_batch([5, 17, 1, 40, 33, 2], seed=4)
    weights = torch.linspace(-1.0, 2.0, 6)

    def grads(logits_of) -> dict[str, torch.Tensor | None]:
        backbone.zero_grad(set_to_none=True)
        (logits_of().squeeze(-1) * weights).sum().backward()
        return {name: p.grad for name, p in backbone.named_parameters()}

    ours = grads(lambda: sequence_classification_logits(backbone, ids, mask, attention=kernel))
    theirs = grads(lambda: hf_logits(backbone, ids, mask))
    assert {n for n, g in ours.items() if g is None} == {n for n, g in theirs.items() if g is None}
    trained = [n for n, g in theirs.items() if g is not None]
    assert len(trained) == len(list(backbone.parameters()))  # every parameter, last query included
    for name in trained:
        torch.testing.assert_close(ours[name], theirs[name], atol=1e-5, rtol=1e-4, msg=name)


def test_pad_and_unpad_are_each_others_adjoint():
    rows = torch.tensor([0, 0, 0, 1, 2, 2])
    columns = torch.tensor([0, 1, 2, 0, 0, 1])
    packed = torch.randn(6, 2 * 3 * 4, dtype=torch.float64, requires_grad=True)  # 2 parts, 3 heads, dim 4
    assert torch.autograd.gradcheck(lambda x: packed_bert._Pad.apply(x, rows, columns, 3, 4, 3, 4), (packed,))
    padded = torch.randn(3, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: packed_bert._Unpad.apply(x, rows, columns), (padded,))
    grid = packed_bert._Pad.apply(packed, rows, columns, 3, 4, 3, 4)
    assert grid.shape == (2, 3, 3, 4, 4)
    assert (grid[:, 1, :, 1:] == 0).all() and (grid[:, 2, :, 2:] == 0).all()  # pad slots stay zero
    torch.testing.assert_close(packed_bert._Unpad.apply(grid[1], rows, columns), packed[:, 12:])


# ---------------------------------------------------------------- dropout
def test_dropout_is_applied_in_train_mode_and_off_in_eval_mode():
    backbone = tiny_bert(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
    ids, mask = random_batch([5, 17, 40])
    with torch.no_grad():
        torch.testing.assert_close(sequence_classification_logits(backbone, ids, mask),
                                   hf_logits(backbone, ids, mask), atol=1e-5, rtol=1e-5)
        backbone.train()
        first = sequence_classification_logits(backbone, ids, mask, attention="baddbmm")
        second = sequence_classification_logits(backbone, ids, mask, attention="sdpa")
        third = sequence_classification_logits(backbone, ids, mask, attention="baddbmm")
    assert not torch.allclose(first, third) and not torch.allclose(first, second)


# ---------------------------------------------------------------- fall-back
def test_unsupported_backbones_and_batches_fall_back_to_the_hf_forward(minilm, count_hf_calls):
    _, mask = random_batch([3, 5])
    assert supports(tiny_bert(), mask)
    assert not supports(tiny_bert(is_decoder=True), mask)
    checkpointed = tiny_bert()
    checkpointed.activation_checkpointing_enable()
    assert not supports(checkpointed, mask)
    assert not supports(tiny_bert(), mask.flip(1))  # left padding: the first token is a pad

    # TextRewardModel runs the HF forward for them, with the HF rewards
    left_ids, left_mask = minilm.pad([minilm.encode(p, r, max_length=64).input_ids for p, r in TEXTS[:3]])
    left_ids, left_mask = left_ids.flip(1), left_mask.flip(1)
    calls = count_hf_calls(minilm.backbone)
    with torch.no_grad():
        rewards = minilm(left_ids, left_mask)
        assert calls[0] == 1
        torch.testing.assert_close(rewards, hf_logits(minilm.backbone, left_ids, left_mask).squeeze(-1))


def test_decoders_fall_back_to_the_hf_forward(tiny_decoder, minilm, count_hf_calls):
    tokenizer = minilm.tokenizer
    model = TextRewardModel(tiny_decoder, tokenizer)
    set_pad_token(tokenizer, model.backbone)
    ids, mask = model.pad([model.encode(p, r, max_length=64).input_ids for p, r in TEXTS[:3]])
    assert not supports(model.backbone, mask)
    calls = count_hf_calls(model.backbone)
    with torch.no_grad():
        rewards = model(ids, mask)
    assert calls[0] == 1
    torch.testing.assert_close(rewards, hf_logits(model.backbone, ids, mask).squeeze(-1))

"""TextRewardModel: loading, padding, where the reward is read, saving."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

from rewardkit.errors import ModelError
from rewardkit.models import TextRewardModel
from rewardkit.models.text import set_pad_token

SHORT = ("What is the capital of France?", "Paris.")
LONG = (
    "Tell me a long story about a dragon, a knight and a village by the sea.",
    "Once upon a time there was a dragon who lived in a cave above a small fishing village. "
    "Every spring a knight rode out to meet it, and every spring they talked until sunset "
    "about the tides, the boats and the price of salt, and then the knight rode home again.",
)


# ---------------------------------------------------------------- (a) real MiniLM encoder
def test_load_sets_pad_token_and_right_padding(minilm):
    tok = minilm.tokenizer
    assert tok.pad_token is not None
    assert tok.padding_side == "right"
    assert minilm.backbone.config.pad_token_id == tok.pad_token_id
    assert minilm.backbone.config.num_labels == 1
    assert minilm.special.prefix == (tok.cls_token_id,)
    assert minilm.special.suffix == (tok.sep_token_id,)


def test_minilm_pad_puts_pad_ids_on_the_right(minilm):
    short = minilm.encode(*SHORT, max_length=128).input_ids
    long = minilm.encode(*LONG, max_length=128).input_ids
    input_ids, mask = minilm.pad([short, long])
    assert input_ids.shape == mask.shape == (2, len(long))
    assert input_ids.dtype == mask.dtype == torch.long
    assert input_ids[0, : len(short)].tolist() == short
    assert (input_ids[0, len(short) :] == minilm.tokenizer.pad_token_id).all()
    assert mask[0].tolist() == [1] * len(short) + [0] * (len(long) - len(short))
    assert mask[1].sum().item() == len(long)


def test_minilm_reward_does_not_change_inside_a_padded_batch(minilm):
    short = minilm.encode(*SHORT, max_length=128).input_ids
    long = minilm.encode(*LONG, max_length=128).input_ids
    assert len(long) > 3 * len(short)  # lots of padding on the short row
    with torch.no_grad():
        alone = minilm(*minilm.pad([short]))
        batch = minilm(*minilm.pad([short, long]))
        long_alone = minilm(*minilm.pad([long]))
    assert alone.shape == (1,) and batch.shape == (2,) and batch.dtype == torch.float32
    torch.testing.assert_close(batch[0], alone[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(batch[1], long_alone[0], atol=1e-4, rtol=0)


def test_minilm_score_is_independent_of_batching_and_keeps_input_order(minilm):
    prompts = [SHORT[0], LONG[0], "", SHORT[0]]
    responses = [SHORT[1], LONG[1], "Just a response.", "London."]
    one_by_one = minilm.score(prompts, responses, batch_size=1)
    together = minilm.score(prompts, responses, batch_size=4)
    assert len(together) == 4 and all(isinstance(r, float) for r in together)
    assert together == pytest.approx(one_by_one, abs=1e-4)
    # input order is kept although score() sorts texts by length internally
    reversed_rewards = minilm.score(prompts[::-1], responses[::-1], batch_size=4)
    assert reversed_rewards[::-1] == pytest.approx(together, abs=1e-4)
    assert len(set(round(r, 5) for r in together)) == 4  # different texts, different rewards


def test_score_restores_training_mode(minilm):
    minilm.train()
    try:
        minilm.score([""], ["hello"])
        assert minilm.training
    finally:
        minilm.eval()


# ---------------------------------------------------------------- (b) tiny random decoders
def test_set_pad_token_reuses_unk_for_a_tokenizer_without_pad_or_eos(tokenizer_without_pad, tiny_decoder):
    tok = tokenizer_without_pad
    tok.padding_side = "left"
    assert tok.eos_token is None and tiny_decoder.config.pad_token_id is None
    set_pad_token(tok, tiny_decoder)
    assert tok.pad_token == tok.unk_token
    assert tok.padding_side == "right"
    assert tiny_decoder.config.pad_token_id == tok.unk_token_id


def test_set_pad_token_prefers_eos(tokenizer_without_pad, tiny_decoder):
    tok = tokenizer_without_pad
    tok.eos_token = tok.sep_token
    set_pad_token(tok, tiny_decoder)
    assert tok.pad_token == tok.sep_token
    assert tiny_decoder.config.pad_token_id == tok.sep_token_id


def test_set_pad_token_keeps_an_existing_pad_token(minilm):
    tok = minilm.tokenizer
    before = tok.pad_token
    set_pad_token(tok, minilm.backbone)
    assert tok.pad_token == before == "[PAD]"
    assert minilm.backbone.config.pad_token_id == tok.pad_token_id


def test_set_pad_token_without_any_fallback_raises(tokenizer_without_pad, tiny_decoder):
    tokenizer_without_pad.unk_token = None
    with pytest.raises(ModelError, match="pad"):
        set_pad_token(tokenizer_without_pad, tiny_decoder)


def test_decoder_reward_is_read_at_the_last_real_token(tokenizer_without_pad, tiny_decoder, hidden_states):
    tok = tokenizer_without_pad
    set_pad_token(tok, tiny_decoder)
    model = TextRewardModel(tiny_decoder, tok).eval()
    short = model.encode(*SHORT, max_length=120).input_ids
    long = model.encode(*LONG, max_length=120).input_ids
    assert tok.pad_token_id not in short  # the text itself never ends in the pad token
    n = len(short)
    assert len(long) > 3 * n

    with torch.no_grad():
        alone = model(*model.pad([short]))
        ids, mask = model.pad([short, long])
        batch = model(ids, mask)
        # reference: the score head applied to the hidden state of the last real token
        hidden = hidden_states(tiny_decoder, ids, mask)
        expected = tiny_decoder.score(hidden[0, n - 1]).squeeze(-1)
        at_last_position = tiny_decoder.score(hidden[0, -1]).squeeze(-1)  # a pad position
        long_expected = tiny_decoder.score(hidden[1, len(long) - 1]).squeeze(-1)

    torch.testing.assert_close(batch[0], alone[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(batch[0], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(batch[1], long_expected, atol=1e-5, rtol=0)
    # the check above can fail: reading the reward at the padded end gives another number
    assert abs(at_last_position.item() - batch[0].item()) > 1e-4
    assert model.score([SHORT[0], LONG[0]], [SHORT[1], LONG[1]], batch_size=2) == pytest.approx(
        batch.tolist(), abs=1e-4
    )


# ---------------------------------------------------------------- (c) load errors
def test_load_missing_folder_raises_model_error_naming_the_path():
    with pytest.raises(ModelError, match="/no/such/dir"):
        TextRewardModel.load("/no/such/dir")


def test_load_folder_that_is_not_a_model_raises_model_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot load backbone") as info:
        TextRewardModel.load(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "\n" not in str(info.value)  # one line, for the CLI


def test_load_empty_folder_raises_model_error(tmp_path):
    with pytest.raises(ModelError, match=str(tmp_path)):
        TextRewardModel.load(tmp_path)


# ---------------------------------------------------------------- (e) save
def _reload(folder: Path):
    backbone = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    return backbone, tok


def test_saved_decoder_loads_with_plain_transformers_and_gives_the_same_rewards(
    tokenizer_without_pad, tiny_decoder, tmp_path
):
    tok = tokenizer_without_pad
    set_pad_token(tok, tiny_decoder)
    model = TextRewardModel(tiny_decoder, tok).eval()
    folder = model.save(tmp_path / "saved")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()

    backbone, tok2 = _reload(folder)
    assert backbone.config.pad_token_id == tok.pad_token_id
    assert tok2.pad_token == tok.pad_token
    texts = [SHORT, LONG, ("", "Short answer.")]
    before = model.score([p for p, _ in texts], [r for _, r in texts])

    # plain transformers: tokenizer's own padding, no rewardkit code on this path
    batch = tok2([p + " " + r if p else r for p, r in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        # (only ids and mask: GPT-2 would add the BERT tokenizer's token_type_ids as embeddings)
        plain = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        plain = plain.logits.squeeze(-1).tolist()
    assert batch["attention_mask"][2].sum() < batch["attention_mask"].shape[1]  # really padded
    assert plain == pytest.approx(before, abs=1e-4)

    # and through load(): same rewards again
    reloaded = TextRewardModel.load(folder)
    assert reloaded.score([p for p, _ in texts], [r for _, r in texts]) == pytest.approx(before, abs=1e-5)


def test_saved_minilm_loads_with_plain_transformers_and_gives_the_same_rewards(minilm, tmp_path):
    folder = minilm.save(tmp_path / "saved")
    backbone, tok = _reload(folder)
    assert backbone.config.num_labels == 1
    assert backbone.config.pad_token_id == minilm.tokenizer.pad_token_id
    ids, mask = minilm.pad([minilm.encode(*SHORT, 128).input_ids, minilm.encode(*LONG, 128).input_ids])
    with torch.no_grad():
        expected = minilm(ids, mask)
        got = backbone(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)

"""A small Llama-style decoder reward model built from a config, for throughput figures offline.

Nothing is downloaded: a byte-level BPE tokenizer (GPT-2's scheme, where a word's leading
space belongs to its token) is trained in memory on the benchmark's own texts, and a
randomly initialised ``LlamaForSequenceClassification`` with one logit is sized to it. The
folder written loads unchanged with ``from_pretrained`` in rewardkit and TRL, so both start
from the same weights. Its accuracy is meaningless (random start, a few hundred pairs); its
speed is what a decoder of that shape costs.

The tokenizer adds no special tokens (no BOS/EOS around a text) and pads with its own
``<|pad|>`` token, so the reward is read at the last real token of every text.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

EOS, PAD = "<|endoftext|>", "<|pad|>"


def build_random_decoder(
    folder: str | Path,
    texts: Iterable[str],
    *,
    vocab_size: int = 8192,
    hidden_size: int = 256,
    num_layers: int = 4,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 768,
    max_positions: int = 512,
    seed: int = 0,
) -> Path:
    """Train a byte-level BPE on ``texts``, build a random Llama reward model, save both to ``folder``.

    Args:
        folder: Where ``config.json``, ``model.safetensors`` and the tokenizer files go.
        texts: Training texts for the tokenizer (prompt + response strings).
        vocab_size: Tokenizer vocabulary, special tokens included.
        hidden_size: Model width; ``hidden_size / num_heads`` is the head size.
        num_layers: Decoder layers.
        num_heads: Query heads.
        num_kv_heads: Key/value heads (grouped-query attention, as in Llama 2/3).
        intermediate_size: Width of the SwiGLU feed-forward layer.
        max_positions: Longest sequence (RoPE); must cover the benchmark's ``max_length``.
        seed: Seed of the weight initialisation.

    Returns:
        ``folder``, as a path.
    """
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS, PAD], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token=EOS, pad_token=PAD, model_max_length=max_positions)

    config = transformers.LlamaConfig(
        vocab_size=bpe.get_vocab_size(), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_kv_heads, intermediate_size=intermediate_size,
        max_position_embeddings=max_positions, num_labels=1, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForSequenceClassification(config)
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder

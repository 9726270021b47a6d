"""Tokenizers for the captioner's decoder: one trained on the captions (offline default) or a model's own.

The from-scratch decoder gets a word-level vocabulary built on the training captions (a `tokenizers`
WordLevel model, as most AAC systems use): caption corpora have a few thousand words (AudioCaps ~5k,
Clotho ~4.4k, the synthetic library a few hundred), and a vocabulary that small keeps the decoder's
embedding and output layers, most of a small decoder's weights, small.
Every tokenizer is stored as its `tokenizer.json` text inside the captioner's JSON, so a saved captioner
needs nothing from the hub.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from transformers import PreTrainedTokenizerFast

SPECIAL = {"pad_token": "[PAD]", "bos_token": "[BOS]", "eos_token": "[EOS]", "unk_token": "[UNK]"}


def train_word_vocab(captions: Iterable[str], vocab_size: int = 2000, min_count: int = 2) -> PreTrainedTokenizerFast:
    """A lower-cased word-level tokenizer fitted to these captions ([PAD]=0, [BOS]=1, [EOS]=2, [UNK]=3).

    Words (BERT pre-tokenisation: punctuation split off) seen at least `min_count` times, most frequent
    first, ties alphabetical. Built by counting rather than with a `tokenizers` trainer, whose frequency
    ties fall in no fixed order: the same captions must give the same ids (a resumed run relies on it).
    """
    from collections import Counter

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for caption in captions:
        counts.update(word for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(caption)))
    words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    vocab = {tok: i for i, tok in enumerate(SPECIAL.values())}
    for word in words[: max(0, vocab_size - len(vocab))]:
        vocab[word] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL["unk_token"]))
    tok.normalizer = normalizer
    tok.pre_tokenizer = splitter
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL)


def ensure_special_tokens(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """GPT-2 has one <|endoftext|> for begin, end and (here) padding: fill in what a model's tokenizer lacks."""
    if tokenizer.eos_token is None:
        raise ValueError("the decoder's tokenizer has no end-of-sequence token")
    if tokenizer.bos_token is None:
        tokenizer.bos_token = tokenizer.eos_token
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tokenizer_to_json(tokenizer: PreTrainedTokenizerFast) -> dict[str, Any]:
    special = {k: getattr(tokenizer, k) for k in SPECIAL}
    return {"tokenizer_json": tokenizer.backend_tokenizer.to_str(), "special_tokens": special}


def tokenizer_from_json(data: dict[str, Any]) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(data["tokenizer_json"])
    return PreTrainedTokenizerFast(tokenizer_object=tok, **data["special_tokens"])

"""A tiny, randomly initialised CLAP with a byte-level tokenizer: built offline, for tests and plumbing.

Its embeddings are deterministic (seeded) but carry no meaning: anything that uses it says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import ClapConfig, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # RoBERTa's ids 0..4


def byte_level_tokenizer() -> PreTrainedTokenizerFast:
    """A RoBERTa-style tokenizer over raw bytes (no merges): needs no vocabulary download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_max_length=TINY_MAX_POSITIONS - 2,
    )


TINY_MAX_POSITIONS = 80


def tiny_clap_config(vocab_size: int, *, fusion: bool = False) -> ClapConfig:
    """HTSAT/RoBERTa wiring of LAION-CLAP at toy width: same preprocessing (48 kHz, 64 mels, 10 s)."""
    from transformers import ClapAudioConfig, ClapConfig, ClapTextConfig

    text = ClapTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=TINY_MAX_POSITIONS,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        projection_dim=32,
    )
    audio = ClapAudioConfig(
        spec_size=256,
        num_mel_bins=64,
        window_size=8,
        patch_size=4,
        patch_stride=(4, 4),
        patch_embeds_hidden_size=16,
        hidden_size=128,
        depths=[1, 1, 1, 1],
        num_attention_heads=[1, 2, 2, 4],
        enable_fusion=fusion,
        projection_dim=32,
    )
    return ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=32)


def save_tiny_random_clap(out_dir: str | Path, *, seed: int = 0, fusion: bool = False) -> Path:
    """Write a random tiny CLAP in Hugging Face layout (model, tokenizer, feature extractor)."""
    from transformers import ClapFeatureExtractor, ClapModel

    out = Path(out_dir)
    tokenizer = byte_level_tokenizer()
    torch.manual_seed(seed)
    model = ClapModel(tiny_clap_config(len(tokenizer), fusion=fusion)).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    ClapFeatureExtractor(truncation="fusion" if fusion else "rand_trunc").save_pretrained(out)
    return out

"""The captioning model: audio tokens → mapping network → a `transformers` text decoder.

Two ways of conditioning, chosen by the decoder's architecture:

- encoder-decoder models (BART, and the small offline decoder, which is a BART with no encoder layers):
  the mapped audio tokens are the `inputs_embeds` of the model's encoder, whose output is the
  cross-attention memory (as in WavCaps' HTSAT-BART). With zero encoder layers that encoder only adds
  positions and a layer norm: the memory learns where in time each token is.
- decoder-only models (GPT-2 and other causal LMs): the mapped tokens are a prefix in front of the
  caption's token embeddings (ClipCap-style).

A memory of one token (an encoder that only exposes its pooled vector) is expanded by the mapping network
into `prefix_tokens` tokens, so the decoder still has several positions to attend to.
Decoding is `generate` from `transformers`: batched beam search or greedy, `no_repeat_ngram_size`,
minimum and maximum length, deterministic (no sampling).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerFast


@dataclass(frozen=True)
class DecodeConfig:
    num_beams: int = 3
    no_repeat_ngram_size: int = 2
    min_length: int = 3  # new tokens, end-of-sequence excluded
    max_length: int = 30
    length_penalty: float = 1.0

    def __post_init__(self) -> None:
        if self.num_beams < 1 or self.max_length < 1 or not 0 <= self.min_length <= self.max_length:
            raise ValueError(f"need num_beams >= 1 and 0 <= min_length <= max_length >= 1, got {self}")


GREEDY = DecodeConfig(num_beams=1)


class Mapper(nn.Module):
    """Audio tokens [n, t, feature_dim] → decoder-width tokens [n, t', d] (t' = t, or `expand` when t == 1)."""

    def __init__(self, feature_dim: int, d_model: int, expand: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.expand = expand
        self.d_model = d_model
        self.norm = nn.LayerNorm(feature_dim)
        self.per_token = nn.Sequential(
            nn.Linear(feature_dim, d_model), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_model, d_model)
        )
        self.from_vector = nn.Linear(feature_dim, d_model * expand)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.norm(tokens)
        if x.shape[1] == 1:
            out = self.from_vector(x[:, 0]).view(x.shape[0], self.expand, self.d_model)
            return out, mask[:, :1].expand(-1, self.expand)
        return self.per_token(x), mask


class CaptionModel(nn.Module):
    def __init__(
        self, decoder: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, feature_dim: int, prefix_tokens: int = 8
    ) -> None:
        super().__init__()
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.seq2seq = bool(decoder.config.is_encoder_decoder)
        self.mapper = Mapper(feature_dim, int(decoder.config.hidden_size), prefix_tokens)
        self.bos_id = int(tokenizer.bos_token_id)
        self.eos_id = int(tokenizer.eos_token_id)
        self.pad_id = int(tokenizer.pad_token_id)

    # --- inputs ------------------------------------------------------------------------------------

    def text_batch(self, captions: Sequence[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(decoder input [bos w1..wn], targets [w1..wn eos], mask of real positions), right-padded."""
        ids = self.tokenizer(list(captions), add_special_tokens=False)["input_ids"]
        seqs = [[int(t) for t in s[:max_tokens]] for s in ids]
        width = max(len(s) for s in seqs) + 1
        inp = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        tgt = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.bool)
        for i, s in enumerate(seqs):
            inp[i, : len(s) + 1] = torch.tensor([self.bos_id, *s])
            tgt[i, : len(s) + 1] = torch.tensor([*s, self.eos_id])
            mask[i, : len(s) + 1] = True
        return inp, tgt, mask

    def _memory(self, tokens: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        memory, mem_mask = self.mapper(tokens, mask)
        return memory.to(self.decoder.dtype), mem_mask.long()

    # --- training ----------------------------------------------------------------------------------

    def logits(
        self, tokens: torch.Tensor, mask: torch.Tensor, inp: torch.Tensor, inp_mask: torch.Tensor
    ) -> torch.Tensor:
        """Next-token logits [n, len(inp), vocab] for audio tokens (left-padded, `mask`) and decoder input."""
        memory, mem_mask = self._memory(tokens, mask)
        if self.seq2seq:
            encoder: Any = self.decoder.get_encoder()
            encoded = encoder(inputs_embeds=memory, attention_mask=mem_mask)
            out = self.decoder(
                encoder_outputs=encoded,
                attention_mask=mem_mask,
                decoder_input_ids=inp,
                decoder_attention_mask=inp_mask.long(),
            )
            return out.logits
        embeds = torch.cat([memory, self.decoder.get_input_embeddings()(inp)], dim=1)
        attention = torch.cat([mem_mask, inp_mask.long()], dim=1)
        # Positions count real tokens only, as `generate` computes them for left-padded inputs.
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        out = self.decoder(inputs_embeds=embeds, attention_mask=attention, position_ids=positions)
        return out.logits[:, memory.shape[1] :]

    def loss(
        self,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        captions: Sequence[str],
        *,
        max_tokens: int = 40,
        label_smoothing: float = 0.1,
    ) -> torch.Tensor:
        inp, tgt, tmask = self.text_batch(captions, max_tokens)
        device = tokens.device
        logits = self.logits(tokens, mask, inp.to(device), tmask.to(device))
        tmask = tmask.to(device)
        return nn.functional.cross_entropy(
            logits[tmask].float(), tgt.to(device)[tmask], label_smoothing=label_smoothing
        )

    # --- decoding ----------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, tokens: torch.Tensor, mask: torch.Tensor, cfg: DecodeConfig = DecodeConfig()) -> list[str]:
        from transformers import GenerationConfig

        gen = GenerationConfig(
            num_beams=cfg.num_beams,
            do_sample=False,
            no_repeat_ngram_size=cfg.no_repeat_ngram_size,
            min_new_tokens=cfg.min_length,
            max_new_tokens=cfg.max_length,
            length_penalty=cfg.length_penalty,
            early_stopping=True,
            bos_token_id=self.bos_id,
            eos_token_id=self.eos_id,
            pad_token_id=self.pad_id,
            decoder_start_token_id=self.bos_id,
        )
        memory, mem_mask = self._memory(tokens, mask)
        kwargs: dict[str, Any] = {"generation_config": gen, "attention_mask": mem_mask}
        if self.seq2seq:
            encoder: Any = self.decoder.get_encoder()
            kwargs["encoder_outputs"] = encoder(inputs_embeds=memory, attention_mask=mem_mask)
        else:
            bos = torch.full((memory.shape[0], 1), self.bos_id, dtype=torch.long, device=memory.device)
            kwargs["inputs_embeds"] = torch.cat([memory, self.decoder.get_input_embeddings()(bos)], dim=1)
            kwargs["attention_mask"] = torch.cat([mem_mask, torch.ones_like(bos)], dim=1)
        with warnings.catch_warnings():
            # Wanted here: n-gram blocking applies to the caption, not to the audio prefix (which has no ids).
            warnings.filterwarnings("ignore", message=".*no_repeat_ngram_size.*inputs_embeds", category=UserWarning)
            generate: Any = self.decoder.generate
            out = generate(**kwargs)
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=True)
        return [_tidy(t) for t in texts]


def _tidy(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].upper() + text[1:]


def pad_tokens(tokens: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad per-clip token sequences [t_i, d] to [n, max t, d] with a mask of the real tokens.

    Left padding keeps the real tokens next to the caption for a prefix decoder, as `generate` expects.
    """
    width = max(t.shape[0] for t in tokens)
    out = torch.zeros((len(tokens), width, tokens[0].shape[1]), dtype=tokens[0].dtype, device=tokens[0].device)
    mask = torch.zeros((len(tokens), width), dtype=torch.bool, device=tokens[0].device)
    for i, t in enumerate(tokens):
        out[i, width - t.shape[0] :] = t
        mask[i, width - t.shape[0] :] = True
    return out, mask

"""Original LAION-CLAP checkpoints (`630k-audioset-best.pt`, ...) converted to `transformers.ClapModel`.

A LAION `.pt` file holds `{"state_dict": {"module.audio_branch...": tensor, ...}, ...}` (or the bare state
dict) and no config: the architecture is read off the tensor shapes (HTSAT-tiny/-base/any width, fused or
not; RoBERTa text branch), the keys are renamed the way transformers' `convert_clap_original_pytorch_to_hf.py`
does, and every tensor must land somewhere, so a checkpoint of another layout fails loudly, never
half-loaded. The result is a `ClapEncoder` with LAION's own preprocessing (int16 round trip, repeat-pad).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from indexer.encoders.clap import ClapEncoder, MelFrontend
from indexer.errors import EncoderLoadError
from indexer.settings import Settings, settings

if TYPE_CHECKING:
    from transformers import ClapConfig, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

TOKENIZER_ENV = Settings.env_name("roberta_tokenizer")
# LAION loads its tokenizer as `roberta-base`; the hub has since moved it under FacebookAI/.
ROBERTA_HUB_IDS = ("roberta-base", "FacebookAI/roberta-base")

StateDict = dict[str, torch.Tensor]

_AUDIO = "audio_model.audio_encoder."
_WORD_EMBEDDINGS = "text_branch.embeddings.word_embeddings.weight"
_FUSION_CONV = "audio_branch.patch_embed.mel_conv2d.weight"  # only fused HTSATs have it
_BLOCK = r"audio_branch\.(layers\.\d+\.blocks\.\d+)\."

# LAION name -> ClapModel name, first full match wins (transformers' conversion table, spelled per key).
_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"logit_scale_[at]", r"\g<0>"),
        (r"text_branch\.(.+)", r"text_model.\1"),
        # LAION's projections are nn.Sequential(Linear, ReLU, Linear).
        (r"(audio|text)_projection\.0\.(weight|bias)", r"\1_projection.linear1.\2"),
        (r"(audio|text)_projection\.2\.(weight|bias)", r"\1_projection.linear2.\2"),
        (r"audio_branch\.bn0\.(.+)", _AUDIO + r"batch_norm.\1"),
        (_BLOCK + r"norm1\.(.+)", _AUDIO + r"\1.layernorm_before.\2"),
        (_BLOCK + r"norm2\.(.+)", _AUDIO + r"\1.layernorm_after.\2"),
        (_BLOCK + r"attn\.proj\.(.+)", _AUDIO + r"\1.attention.output.dense.\2"),
        (_BLOCK + r"attn\.(relative_position_bias_table)", _AUDIO + r"\1.attention.self.\2"),
        (_BLOCK + r"mlp\.fc1\.(.+)", _AUDIO + r"\1.intermediate.dense.\2"),
        (_BLOCK + r"mlp\.fc2\.(.+)", _AUDIO + r"\1.output.dense.\2"),
        (
            r"audio_branch\.(patch_embed\..+|layers\.\d+\.downsample\..+|norm\.(?:weight|bias))",
            _AUDIO + r"\1",
        ),
    )
)
# LAION keeps q, k and v in one matrix; ClapModel has three.
_QKV = re.compile(_BLOCK + r"attn\.qkv\.(weight|bias)")

# LAION tensors with no counterpart in ClapModel, and why dropping them changes no embedding.
_DROPPED = re.compile(
    # STFT and mel filters stored as weights: MelFrontend computes the same features.
    r"audio_branch\.(spectrogram_extractor|logmel_extractor)\..+"
    # The AudioSet classifier head, off the embedding path.
    r"|audio_branch\.(tscam_conv|head)\..+"
    # MLPs used only by the training loss.
    r"|(audio|text)_transform\..+"
    # Buffers derived from the config, which ClapModel computes itself.
    r"|.+\.(attn_mask|relative_position_index)"
    # Constant buffers that older transformers versions saved.
    r"|text_branch\.embeddings\.(position_ids|token_type_ids)"
)
# ClapModel buffers that the model derives itself and a checkpoint therefore need not supply.
_DERIVED_BUFFERS = re.compile(r".+\.(relative_position_index|position_ids|token_type_ids)")


def load_laion_checkpoint(path: str | Path, *, device: str | None = None, batch_size: int | None = None) -> ClapEncoder:
    """Load an original LAION-CLAP checkpoint (HTSAT audio branch, RoBERTa text branch) as a `ClapEncoder`."""
    from transformers import ClapModel

    path = Path(path)
    state = read_laion_state_dict(path)
    config = clap_config_from_laion(state)
    converted = convert_laion_state_dict(state)
    model = ClapModel(config)
    try:
        result = model.load_state_dict(converted, strict=False)
    except RuntimeError as exc:  # shape mismatches, one line each
        detail = " ".join(str(exc).split())
        raise EncoderLoadError(f"{path.name}: tensors do not fit the inferred architecture: {detail}") from None
    missing = [k for k in result.missing_keys if not _DERIVED_BUFFERS.fullmatch(k)]
    if missing or result.unexpected_keys:
        raise EncoderLoadError(
            f"{path.name} does not match a LAION-CLAP HTSAT/RoBERTa model: "
            f"missing {_preview(missing)}, unexpected {_preview(result.unexpected_keys)}"
        )
    tokenizer = load_roberta_tokenizer(path)
    vocab_size = state[_WORD_EMBEDDINGS].shape[0]
    if len(tokenizer) > vocab_size:
        raise EncoderLoadError(
            f"the RoBERTa tokenizer has {len(tokenizer)} tokens but {path.name} embeds only "
            f"{vocab_size}: set {TOKENIZER_ENV} to the tokenizer it was trained with"
        )
    return ClapEncoder(
        model,
        tokenizer,
        model_id=path.name,
        frontend=MelFrontend(fusion=_FUSION_CONV in state, quantize_int16=True),
        device=device,
        batch_size=batch_size,
    )


def read_laion_state_dict(path: Path) -> StateDict:
    """The checkpoint's tensors with DataParallel's `module.` prefix removed."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as safe_exc:  # corrupt files make the unpickler raise almost anything
        # Training checkpoints may pickle Python objects next to the tensors (e.g. optimizer settings),
        # which the safe loader refuses; the full unpickler runs code from the file, so say so.
        try:
            raw = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise EncoderLoadError(f"{path.name} is not a readable PyTorch checkpoint: {_first_line(exc)}") from None
        log.warning(
            "%s holds more than tensors (%s); loaded it with full unpickling: use only files you trust",
            path.name,
            _first_line(safe_exc),
        )
    state = raw.get("state_dict", raw) if isinstance(raw, Mapping) else None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise EncoderLoadError(f"{path.name} holds no state dict (expected tensors, or a 'state_dict' entry)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def clap_config_from_laion(state: Mapping[str, torch.Tensor]) -> ClapConfig:
    """A `ClapConfig` for the shapes in a LAION state dict; any HTSAT width and depth, fused or not."""
    from transformers import ClapAudioConfig, ClapConfig, ClapTextConfig

    if "audio_branch.patch_embed.proj.weight" not in state:
        raise EncoderLoadError("only HTSAT audio branches are supported (no audio_branch.patch_embed found)")
    if _WORD_EMBEDDINGS not in state:
        raise EncoderLoadError("only RoBERTa text branches are supported (no text_branch.embeddings found)")

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise EncoderLoadError(f"the checkpoint lacks {key}: it is incomplete or not a LAION-CLAP model")
        return tuple(state[key].shape)

    embed_dim, in_channels, patch, _ = shape("audio_branch.patch_embed.proj.weight")
    stages = _count(state, r"audio_branch\.layers\.(\d+)\.blocks\.0\.norm1\.weight")
    depths = [_count(state, rf"audio_branch\.layers\.{i}\.blocks\.(\d+)\.norm1\.weight") for i in range(stages)]
    # relative_position_bias_table: [(2 * window - 1) ** 2, heads]
    tables = [shape(f"audio_branch.layers.{i}.blocks.0.attn.relative_position_bias_table") for i in range(stages)]
    window = (round(tables[0][0] ** 0.5) + 1) // 2
    fusion = _FUSION_CONV in state
    audio_extra: dict[str, Any] = {}
    if fusion:
        audio_extra["aff_block_r"] = embed_dim // shape("audio_branch.patch_embed.fusion_model.local_att.0.weight")[0]
    projection_dim, audio_hidden = shape("audio_projection.0.weight")
    audio = ClapAudioConfig(
        num_mel_bins=shape("audio_branch.bn0.weight")[0],
        window_size=window,
        patch_size=patch,
        patch_stride=(patch, patch),  # HTSAT's patches never overlap
        patch_embed_input_channels=in_channels,
        patch_embeds_hidden_size=embed_dim,
        hidden_size=audio_hidden,
        depths=depths,
        num_attention_heads=[t[1] for t in tables],
        mlp_ratio=shape("audio_branch.layers.0.blocks.0.mlp.fc1.weight")[0] / embed_dim,
        enable_fusion=fusion,
        **audio_extra,
    )

    vocab_size, text_hidden = shape(_WORD_EMBEDDINGS)
    text = ClapTextConfig(
        vocab_size=vocab_size,
        hidden_size=text_hidden,
        num_hidden_layers=_count(state, r"text_branch\.encoder\.layer\.(\d+)\.output\.dense\.weight"),
        # The head count leaves no trace in the shapes; RoBERTa uses 64-dim heads at every size.
        num_attention_heads=max(1, text_hidden // 64),
        intermediate_size=shape("text_branch.encoder.layer.0.intermediate.dense.weight")[0],
        max_position_embeddings=shape("text_branch.embeddings.position_embeddings.weight")[0],
        type_vocab_size=shape("text_branch.embeddings.token_type_embeddings.weight")[0],
        layer_norm_eps=1e-5,  # roberta-base's (ClapTextConfig defaults to BERT's 1e-12)
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    return ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=projection_dim)


def convert_laion_state_dict(state: Mapping[str, torch.Tensor]) -> StateDict:
    """Rename LAION keys to `ClapModel` keys; a key neither renamed nor known to be unused is an error."""
    out: StateDict = {}
    unmapped: list[str] = []
    for key, value in state.items():
        if qkv := _QKV.fullmatch(key):
            block, kind = qkv.groups()
            for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                out[f"{_AUDIO}{block}.attention.self.{name}.{kind}"] = part
        elif renamed := _rename(key):
            out[renamed] = value
        elif not _DROPPED.fullmatch(key):
            unmapped.append(key)
    if unmapped:
        raise EncoderLoadError(f"unknown LAION-CLAP tensors (not an HTSAT/RoBERTa checkpoint?): {_preview(unmapped)}")
    return out


def load_roberta_tokenizer(checkpoint: Path) -> PreTrainedTokenizerBase:
    """LAION's `roberta-base` tokenizer, from $SOUNDSEARCH_ROBERTA_TOKENIZER, ./tokenizer/ or the HF cache."""
    from transformers import RobertaTokenizer

    beside = checkpoint.parent / "tokenizer"
    if chosen := settings().roberta_tokenizer:
        if not _has_tokenizer_files(chosen):
            raise EncoderLoadError(f"{TOKENIZER_ENV}={chosen} holds no vocab.json + merges.txt (or tokenizer.json)")
        return RobertaTokenizer.from_pretrained(str(chosen))
    for directory in itertools.chain([beside], _cached_snapshots(ROBERTA_HUB_IDS)):
        # Checked first because transformers 5 quietly builds an empty tokenizer from a folder without files.
        if _has_tokenizer_files(directory):
            return RobertaTokenizer.from_pretrained(str(directory))
    raise EncoderLoadError(
        f"no RoBERTa tokenizer for {checkpoint.name}: put roberta-base's vocab.json and merges.txt in "
        f"{beside} (or set {TOKENIZER_ENV} to their folder), e.g. `hf download FacebookAI/roberta-base "
        f"vocab.json merges.txt --local-dir {beside}` on a machine with network access"
    )


def _has_tokenizer_files(directory: Path) -> bool:
    return (directory / "tokenizer.json").is_file() or all(
        (directory / name).is_file() for name in ("vocab.json", "merges.txt")
    )


def _cached_snapshots(repo_ids: tuple[str, ...]) -> Iterator[Path]:
    """Snapshot folders of the given repos in the local HF cache (never the network)."""
    from huggingface_hub import snapshot_download

    for repo_id in repo_ids:
        try:
            yield Path(snapshot_download(repo_id, local_files_only=True))
        except OSError:  # LocalEntryNotFoundError: not cached
            continue


def _rename(key: str) -> str | None:
    for pattern, replacement in _RENAMES:
        if match := pattern.fullmatch(key):
            return match.expand(replacement)
    return None


def _count(state: Mapping[str, torch.Tensor], pattern: str) -> int:
    """How many consecutive indices 0, 1, ... the keys show in `pattern`'s one group."""
    regex = re.compile(pattern)
    indices = {int(m.group(1)) for key in state if (m := regex.fullmatch(key))}
    if indices != set(range(len(indices))) or not indices:
        raise EncoderLoadError(
            f"keys matching {pattern!r} have indices {sorted(indices)}: incomplete or not a LAION-CLAP model"
        )
    return len(indices)


def _preview(keys: list[str], limit: int = 8) -> str:
    if not keys:
        return "none"
    shown = ", ".join(sorted(keys)[:limit])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > limit else ''})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

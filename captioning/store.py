"""Building captioners, and saving/loading them as `captioner.safetensors` (fp16) + `captioner.json`.

The JSON holds everything needed to rebuild the model with no hub access: the decoder's `transformers`
config, the tokenizer (its `tokenizer.json` text), the audio encoder spec, feature settings, default
decoding settings and the model card. Encoder weights are stored only when the encoder was fine-tuned
(keys `encoder.*`); otherwise the encoder is loaded by its spec (`indexer.load_encoder`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from captioning.errors import CaptioningError
from captioning.features import FeatureExtractor
from captioning.model import CaptionModel, DecodeConfig
from captioning.tokenizer import ensure_special_tokens, tokenizer_from_json, tokenizer_to_json
from storage.atomic import atomic_path, atomic_write_text

FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).parent / "weights"
MODEL_FILE, META_FILE = "captioner.safetensors", "captioner.json"
SMALL = "small"


@dataclass(frozen=True)
class CaptionerSpec:
    encoder: str  # what `load_encoder` takes to rebuild the audio encoder
    encoder_model_id: str
    feature_dim: int
    decoder_source: str  # "small", a hub id or a local directory (informational once saved)
    decoder_config: dict[str, Any]
    prefix_tokens: int = 8
    max_windows: int = 3  # windows of a clip the model sees at once (whole-clip captioning)
    max_tokens: int = 40
    fine_tuned_encoder: bool = False
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaptionerSpec:
        return cls(**{**data, "decode": DecodeConfig(**data.get("decode", {}))})


def small_decoder_config(
    vocab_size: int, tokenizer: PreTrainedTokenizerFast, *, d_model: int = 256, layers: int = 3
) -> Any:
    """The offline decoder: a BART decoder at small width whose encoder has no layers (see `model`)."""
    from transformers import BartConfig

    return BartConfig(
        vocab_size=vocab_size,
        d_model=d_model,
        encoder_layers=0,
        decoder_layers=layers,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        max_position_embeddings=256,
        dropout=0.1,
        attention_dropout=0.1,
        scale_embedding=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
        forced_eos_token_id=None,
    )


def _model_class(config: Any) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM


def pretrained_decoder(source: str) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A pretrained decoder and its tokenizer (GPT-2, BART, ...) from a local directory or the local HF cache."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(source, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = _model_class(config).from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CaptioningError(
            f"decoder {source!r} is not available offline ({first}): download it once where there is a network "
            f"(`hf download {source}`) and pass its directory, or use --decoder small"
        ) from None
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise CaptioningError(f"decoder {source!r} has no fast tokenizer (tokenizer.json)")
    return model, ensure_special_tokens(tokenizer)


def decoder_from_config(config_dict: dict[str, Any]) -> PreTrainedModel:
    from transformers import AutoConfig

    data = dict(config_dict)
    config = AutoConfig.for_model(data.pop("model_type"), **data)
    model: PreTrainedModel = _model_class(config).from_config(config)
    return model


def save_captioner(
    model: CaptionModel,
    spec: CaptionerSpec,
    out_dir: Path,
    *,
    card: dict[str, Any] | None = None,
    extractor: FeatureExtractor | None = None,
) -> Path:
    """Write the captioner in fp16 (halves the size; decoding quality is unchanged at this scale)."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in copy.deepcopy(model).half().state_dict().items()}
    if spec.fine_tuned_encoder and extractor is not None and (module := extractor.module()) is not None:
        state.update({f"encoder.{k}": v.detach().half() for k, v in module.state_dict().items()})
    # Tied weights (embeddings = output layer) share storage: keep one copy of each, clone to own memory.
    seen: dict[tuple[int, int], str] = {}
    unique: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    for k, v in state.items():
        key = (v.untyped_storage().data_ptr(), v.storage_offset())
        if key in seen and v.is_floating_point():
            tied[k] = seen[key]
            continue
        seen[key] = k
        unique[k] = v.detach().cpu().contiguous().clone()
    with atomic_path(out_dir / MODEL_FILE) as tmp:
        save_file(unique, str(tmp))
    meta = {
        "format_version": FORMAT_VERSION,
        "spec": spec.to_json(),
        "tokenizer": tokenizer_to_json(model.tokenizer),
        "tied": tied,
        "card": card or {},
    }
    atomic_write_text(out_dir / META_FILE, json.dumps(meta, indent=2) + "\n")
    return out_dir


def read_meta(folder: Path) -> dict[str, Any]:
    meta_path, weights = folder / META_FILE, folder / MODEL_FILE
    if not meta_path.is_file() or not weights.is_file():
        raise CaptioningError(f"no captioner in {folder} (expected {META_FILE} and {MODEL_FILE})")
    meta: dict[str, Any] = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise CaptioningError(f"{meta_path}: unsupported format version {meta.get('format_version')}")
    return meta


def load_caption_model(folder: Path) -> tuple[CaptionModel, CaptionerSpec, dict[str, torch.Tensor], dict[str, Any]]:
    """The model (fp32, eval mode), its spec, any fine-tuned encoder weights and the model card."""
    from safetensors.torch import load_file

    meta = read_meta(folder)
    spec = CaptionerSpec.from_json(meta["spec"])
    tokenizer = tokenizer_from_json(meta["tokenizer"])
    model = CaptionModel(decoder_from_config(spec.decoder_config), tokenizer, spec.feature_dim, spec.prefix_tokens)
    state = load_file(str(folder / MODEL_FILE))
    for k, source in meta.get("tied", {}).items():
        state[k] = state[source]
    encoder_state = {k[len("encoder.") :]: state.pop(k) for k in list(state) if k.startswith("encoder.")}
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise CaptioningError(f"{folder / MODEL_FILE} does not match its {META_FILE}: {str(exc)[:300]}") from None
    return model.float().eval(), spec, encoder_state, meta.get("card", {})

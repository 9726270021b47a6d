"""`load_encoder(spec)`: one entry point for every way of naming a model.

A spec is, in order of precedence:
- a built-in name (`list_builtin_encoders()`),
- a path to an original LAION-CLAP checkpoint (`.pt`/`.pth`/`.ckpt`),
- a local directory in Hugging Face layout (`config.json`, weights, tokenizer),
- a Hugging Face hub id such as `laion/clap-htsat-unfused`, looked up in the local HF cache only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from indexer.encoders.base import Encoder
from indexer.errors import EncoderLoadError

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
# What a new catalog is built with when no --model is given.
DEFAULT_MODEL = "mini"

BuiltinFactory = Callable[[str | None, int | None], Encoder]


def _tiny_random(device: str | None, batch_size: int | None) -> Encoder:
    import torch
    from transformers import ClapModel

    from indexer.encoders.clap import ClapEncoder, MelFrontend
    from indexer.encoders.tiny import byte_level_tokenizer, tiny_clap_config

    tokenizer = byte_level_tokenizer()
    torch.manual_seed(0)
    model = ClapModel(tiny_clap_config(len(tokenizer)))
    return ClapEncoder(
        model, tokenizer, model_id="tiny-random", frontend=MelFrontend(), device=device, batch_size=batch_size
    )


def _mini(device: str | None, batch_size: int | None) -> Encoder:
    from indexer.encoders.mini import load_mini

    return load_mini(device=device, batch_size=batch_size or 32)


BUILTIN_ENCODERS: dict[str, BuiltinFactory] = {
    "mini": _mini,
    "tiny-random": _tiny_random,
}


def list_builtin_encoders() -> list[str]:
    return sorted(BUILTIN_ENCODERS)


def load_encoder(spec: str, device: str | None = None, *, batch_size: int | None = None) -> Encoder:
    """Turn a model spec into a ready encoder; failures are one clear `EncoderLoadError` sentence."""
    spec = spec.strip()
    if not spec:
        raise EncoderLoadError("empty model spec: give a model name, a directory or a checkpoint path")
    name, _, version = spec.partition("@")
    if name in BUILTIN_ENCODERS:
        encoder = BUILTIN_ENCODERS[name](device, batch_size)
        # A built-in's id carries its weights' version ("mini@2"): vectors from other weights never mix.
        if version and encoder.model_id != spec:
            raise EncoderLoadError(
                f"model {spec!r} is not available: this soundsearch ships {encoder.model_id!r}; rebuild the "
                f"catalog's vectors with `soundsearch reindex --model {name}`"
            )
        return encoder
    path = Path(spec).expanduser()
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        if not path.is_file():
            raise EncoderLoadError(f"checkpoint not found: {path}")
        from indexer.encoders.laion import load_laion_checkpoint

        return load_laion_checkpoint(path, device=device, batch_size=batch_size)
    if path.is_dir() and (path / "mini.json").is_file():
        from indexer.encoders.mini import load_mini

        encoder = load_mini(path, device=device, batch_size=batch_size or 32)
        encoder.model_id = path.resolve().as_posix()
        return encoder
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EncoderLoadError(
                f"{path} is a directory but not a Hugging Face model (no config.json); "
                "save one with ClapModel.save_pretrained or point at a LAION .pt checkpoint"
            )
        return _load_hf(str(path), path.resolve().as_posix(), device, batch_size)
    if path.exists():
        raise EncoderLoadError(f"{path} is neither a model directory nor a LAION checkpoint (.pt)")
    if "/" in spec and not spec.startswith((".", "/", "~")):
        return _load_hf(spec, spec, device, batch_size)
    raise EncoderLoadError(
        f"unknown model {spec!r}: use one of {', '.join(list_builtin_encoders())}, a Hugging Face hub id "
        "(e.g. laion/clap-htsat-unfused), a local model directory, or a LAION .pt checkpoint"
    )


def _load_hf(source: str, model_id: str, device: str | None, batch_size: int | None) -> Encoder:
    from indexer.encoders.clap import load_hf_clap

    try:
        return load_hf_clap(source, model_id=model_id, device=device, batch_size=batch_size)
    except (OSError, ValueError) as exc:
        if Path(source).is_dir():
            raise EncoderLoadError(f"cannot load the model in {source}: {_first_line(exc)}") from None
        raise EncoderLoadError(
            f"model {source!r} is not available offline (not in the local Hugging Face cache): download it "
            f"once where there is a network (`hf download {source}`) and pass its directory with --model, "
            f"or use a built-in model ({', '.join(list_builtin_encoders())})"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

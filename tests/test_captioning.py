"""Captioning: metrics against pycocoevalcap itself, training, decoding, decoders, bad input, the CLI.

Models here are tiny and random (a two-block `mini` audio tower at 8 kHz, decoders of width 32): the tests
prove plumbing and determinism, not caption quality (benchmarks/eval_captioner.py measures that).
"""

from __future__ import annotations

import json
import types
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch

from captioning.captioner import Captioner, load_captioner
from captioning.data import CaptionClip, load_caption_data
from captioning.errors import CaptioningError
from captioning.features import MiniFrames, MiniTowers, PooledVector, feature_extractor
from captioning.metrics import caption_metrics
from captioning.model import GREEDY, DecodeConfig
from captioning.spice import CORENLP_JARS, download_corenlp, locate_spice
from captioning.train import CaptionTrainConfig, train_captioner
from indexer.encoders.mini import MiniClap, MiniConfig, MiniEncoder, save_mini

SR = 8000
CANDIDATES = ["a dog barks loudly", "rain falls on a roof", "a car passes by", "birds are chirping"]
REFERENCES = [
    ["A dog is barking.", "dog barks twice", "A dog barks loudly nearby"],
    ["Rain is falling on the roof.", "heavy rain on a roof"],
    ["A car drives past", "Vehicle passing by quickly.", "a car passes"],
    ["Birds chirp in the trees", "many birds are singing"],
]


def tiny_mini(window_s: float = 2.0) -> MiniEncoder:
    torch.manual_seed(0)
    cfg = MiniConfig(
        sample_rate=SR, window_s=window_s, n_fft=256, hop_length=128, f_max=4000, channels=(4, 8), embed_dim=16
    )
    # No text tower: the captioner only uses the audio side.
    return MiniEncoder(MiniClap(cfg), types.SimpleNamespace(device=torch.device("cpu")))  # type: ignore[arg-type]


def tiny_two_tower_mini(window_s: float = 2.0) -> MiniEncoder:
    """mini@3's architecture in miniature: a random aiSFX tower at 44.1 kHz beside a two-block CNN at 8 kHz."""
    torch.manual_seed(0)
    cfg = MiniConfig(
        sample_rate=44_100, cnn_rate=SR, audio_tower="aisfx+cnn", window_s=window_s, n_fft=256, hop_length=128,
        f_max=4000, channels=(4, 8), embed_dim=16,
    )  # fmt: skip
    return MiniEncoder(MiniClap(cfg), types.SimpleNamespace(device=torch.device("cpu")))  # type: ignore[arg-type]


def toy_clips(n: int, seed: int = 0) -> tuple[list[CaptionClip], dict[str, np.ndarray]]:
    """Alternating tones and noise bursts, each with two captions."""
    rng = np.random.default_rng(seed)
    t = np.arange(SR) / SR
    clips, audio = [], {}
    for i in range(n):
        key = f"clip{seed}-{i}"
        if i % 2:
            audio[key] = (0.3 * np.sin(2 * np.pi * rng.uniform(300, 900) * t)).astype(np.float32)
            clips.append(CaptionClip(key, ("a high tone beeps steadily", "a steady electronic beep")))
        else:
            audio[key] = (0.3 * rng.standard_normal(SR)).astype(np.float32)
            clips.append(CaptionClip(key, ("loud white noise hisses", "static noise hisses loudly")))
    return clips, audio


SMALL_CFG = CaptionTrainConfig(
    epochs=4, batch_size=8, lr=3e-3, warmup_steps=4, d_model=32, layers=1, vocab_size=80, prefix_tokens=2,
    val_metrics=False, val_decode=DecodeConfig(num_beams=2, max_length=8, min_length=1),
)  # fmt: skip


def train_toy(out: Path, decoder: str = "small", cfg: CaptionTrainConfig = SMALL_CFG, **kwargs: object):  # type: ignore[no-untyped-def]
    clips, audio = toy_clips(20)
    extractor = feature_extractor(tiny_mini())
    return train_captioner(
        extractor,
        "mini",
        decoder,
        clips[:16],
        clips[16:],
        out,
        cfg,
        source=lambda k, sr: audio[k],
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_toy(tmp_path_factory.mktemp("captioner")).best_dir


# --- metrics ---------------------------------------------------------------------------------------


def test_metrics_equal_pycocoevalcap_run_directly() -> None:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({i: [{"caption": r} for r in refs] for i, refs in enumerate(REFERENCES)})
    res = tok.tokenize({i: [{"caption": c}] for i, c in enumerate(CANDIDATES)})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)

    # METEOR (a 10-second JVM start with its paraphrase tables) runs in the benchmark, not here.
    ours = caption_metrics(CANDIDATES, REFERENCES, meteor=False, spice=False)
    assert ours.cider_d == pytest.approx(cider, abs=1e-9) and ours.cider_d > 0.5
    assert [ours.bleu_1, ours.bleu_2, ours.bleu_3, ours.bleu_4] == pytest.approx(bleu, abs=1e-9)
    assert ours.rouge_l == pytest.approx(rouge, abs=1e-9)
    assert ours.meteor is None
    assert ours.spice is None and ours.spider is None
    assert ours.vocab_size == len({w for c in CANDIDATES for w in c.split()})
    assert ours.mean_length == pytest.approx(np.mean([len(c.split()) for c in CANDIDATES]))


def test_spice_where_jars_are_present() -> None:
    location = locate_spice()
    if isinstance(location, str):
        pytest.skip(f"SPICE unavailable: {location}")
    scores = caption_metrics(CANDIDATES, REFERENCES, meteor=False)
    assert scores.spice is not None and 0 < scores.spice <= 1
    assert scores.spider == pytest.approx((scores.cider_d + scores.spice) / 2)


def test_missing_spice_is_reported_never_substituted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("captioning.spice.default_spice_dir", lambda: tmp_path / "nothing")
    if not isinstance(locate_spice(tmp_path), str):
        pytest.skip("the jars are installed inside pycocoevalcap: SPICE is available here")
    scores = caption_metrics(CANDIDATES[:2], REFERENCES[:2], meteor=False, spice_dir=tmp_path)
    assert scores.spice is None and scores.spider is None
    assert "stanford-corenlp-3.6.0.jar" in (scores.spice_unavailable or "")
    assert scores.selection_name == "CIDEr-D" and scores.selection_score == scores.cider_d


def test_spice_download_extracts_the_two_jars(tmp_path: Path) -> None:
    archive = tmp_path / "corenlp.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for jar in CORENLP_JARS:
            zf.writestr(f"stanford-corenlp-full-2015-12-09/{jar}", b"jar bytes " + jar.encode())
        zf.writestr("stanford-corenlp-full-2015-12-09/README.txt", b"x")
    folder = download_corenlp(tmp_path / "spice", url=archive.as_uri())
    assert sorted(p.name for p in folder.iterdir()) == sorted(CORENLP_JARS)
    if not isinstance(location := locate_spice(folder), str):
        assert folder / CORENLP_JARS[0] in location.classpath


# --- features --------------------------------------------------------------------------------------


def test_feature_extractors_give_token_sequences(tiny_clap_dir: Path) -> None:
    from indexer.encoders.registry import load_encoder

    mini = feature_extractor(tiny_mini())
    x = mini.tokens(mini.inputs([np.zeros(SR, np.float32), np.ones(SR // 2, np.float32) * 0.1]))
    assert x.shape == (2, 31, 8)  # 2 s at hop 128 → 126 frames → two 2x poolings → 31 frame tokens of 8 channels
    clap = feature_extractor(load_encoder(str(tiny_clap_dir)))
    tokens = clap.tokens(clap.inputs([np.zeros(48_000, np.float32)]))
    assert tokens.shape[0] == 1 and tokens.shape[1] > 1 and tokens.shape[2] == clap.dim == 128

    class Pooled:
        model_id, sample_rate, window_seconds, dim = "pooled", SR, 1.0, 5

        def embed_audio(self, clips: list[np.ndarray]) -> np.ndarray:
            return np.ones((len(clips), 5), np.float32) / np.sqrt(5)

        def embed_text(self, texts: list[str]) -> np.ndarray:
            raise NotImplementedError

    pooled = feature_extractor(Pooled())  # type: ignore[arg-type]
    assert isinstance(pooled, PooledVector) and not pooled.fine_tunable
    assert pooled.tokens(pooled.inputs([np.zeros(10, np.float32)])).shape == (1, 1, 5)


def test_two_tower_mini_tokens_carry_both_frozen_towers_aligned_in_time() -> None:
    """Each CNN frame token is joined by the aiSFX vector of the 2.3 s block nearest to it; the head (which a
    retrained mini replaces) plays no part, the pretrained tower does."""
    from indexer.encoders import aisfx

    assert isinstance(feature_extractor(tiny_mini()), MiniFrames)  # one tower: unchanged
    encoder = tiny_two_tower_mini(window_s=6.0)
    extractor = feature_extractor(encoder)
    assert isinstance(extractor, MiniTowers) and extractor.dim == 8 + aisfx.DIM
    assert not extractor.fine_tunable and extractor.module() is None
    rng = np.random.default_rng(0)
    t = np.arange(3 * 44_100) / 44_100
    # 3 s of noise then 3 s of a tone: the first and last blocks hear different sounds.
    window = np.concatenate([0.3 * rng.standard_normal(len(t)), 0.3 * np.sin(2 * np.pi * 440 * t)]).astype(np.float32)
    short = window[:44_100]
    tokens = extractor.tokens(extractor.inputs([window, short]))
    assert tokens.shape == (2, 94, 8 + aisfx.DIM)  # 6 s at 8 kHz, hop 128: 376 frames, two 2x poolings → 94
    with torch.no_grad():
        frames = encoder.model.audio.frame_features(encoder.log_mel([window, short]))
    torch.testing.assert_close(tokens[..., :8], frames)
    blocks = encoder.model.aisfx_blocks([window, short], torch.device("cpu"))
    assert len(blocks[0]) == 5 and len(blocks[1]) == 1  # 6 s: blocks at a half-block hop; 1 s: one padded block
    torch.testing.assert_close(tokens[0, 0, 8:], blocks[0][0])
    torch.testing.assert_close(tokens[0, -1, 8:], blocks[0][-1])
    assert not torch.allclose(blocks[0][0], blocks[0][-1])
    torch.testing.assert_close(tokens[1, :, 8:], blocks[1][0].expand(94, -1))  # repeat-padded: one block throughout

    with torch.no_grad():
        for p in encoder.model.head.parameters():
            p.add_(1.0)
        encoder.model.text_projection.weight.mul_(-1.0)
    torch.testing.assert_close(extractor.tokens(extractor.inputs([window])), tokens[:1], rtol=0, atol=0)
    with torch.no_grad():
        encoder.model.aisfx.conv_block4.conv2.weight.mul_(2.0)
    assert not torch.allclose(extractor.tokens(extractor.inputs([window]))[..., 8:], tokens[:1, :, 8:])


def test_captioner_on_two_tower_tokens_trains_loads_and_captions(tmp_path: Path) -> None:
    """Trained on the two towers' tokens, saved, loaded by `load_captioner` beside a mini whose head was
    retrained (same towers): the same captions. Fine-tuning the frozen towers is refused."""
    from dataclasses import replace

    from indexer.audio import resample

    clips, audio = toy_clips(12)
    extractor = feature_extractor(tiny_two_tower_mini())
    cfg = replace(SMALL_CFG, epochs=2)
    with pytest.raises(CaptioningError, match="no trainable audio module"):
        train_captioner(
            extractor, "mini", "small", clips[:8], clips[8:], tmp_path / "ft", replace(cfg, fine_tune_encoder=True)
        )
    result = train_captioner(
        extractor, "mini", "small", clips[:8], clips[8:], tmp_path / "run", cfg,
        source=lambda k, sr: resample(audio[k], SR, sr),
    )  # fmt: skip
    spec = json.loads((result.best_dir / "captioner.json").read_text())["spec"]
    assert spec["feature_dim"] == 8 + 512 and not spec["fine_tuned_encoder"]
    test = [resample(audio[c.key], SR, 44_100) for c in clips[8:]]
    captions = load_captioner(result.best_dir, encoder=tiny_two_tower_mini()).caption_clips(test)
    assert all(isinstance(c, str) and c for c in captions)
    retrained = tiny_two_tower_mini()
    with torch.no_grad():
        for p in retrained.model.head.parameters():
            p.normal_()
    assert load_captioner(result.best_dir, encoder=retrained).caption_clips(test) == captions


# --- training and decoding -------------------------------------------------------------------------


def test_short_training_lowers_the_loss_and_resume_equals_uninterrupted(tmp_path: Path) -> None:
    full = train_toy(tmp_path / "full").history.epochs
    assert full[-1]["loss"] < full[0]["loss"] - 0.4
    assert full[-1]["val_loss"] < full[0]["val_loss"]
    train_toy(tmp_path / "split", stop_after_epoch=2)
    resumed = train_toy(tmp_path / "split").history.epochs
    assert [e["loss"] for e in resumed] == pytest.approx([e["loss"] for e in full], rel=1e-5)
    assert (tmp_path / "full" / "curves.png").stat().st_size > 0


def test_validation_metrics_select_by_cider_without_spice(tmp_path: Path) -> None:
    from dataclasses import replace

    result = train_toy(tmp_path, cfg=replace(SMALL_CFG, epochs=1, val_metrics=True))
    (record,) = result.history.epochs
    assert record["selected_by"] in ("CIDEr-D", "SPIDEr") and record["cider_d"] >= 0
    card = json.loads((result.best_dir / "captioner.json").read_text())["card"]
    assert card["validation"]["cider_d"] == record["cider_d"]


def test_decoding_is_deterministic_and_survives_save_load(trained: Path) -> None:
    encoder = tiny_mini()
    captioner = load_captioner(trained, encoder=encoder)
    clips = [toy_clips(4, seed=3)[1][f"clip3-{i}"] for i in range(4)]
    first = captioner.caption_clips(clips)
    assert first == captioner.caption_clips(clips) == load_captioner(trained, encoder=encoder).caption_clips(clips)
    assert all(isinstance(c, str) and c for c in first)
    greedy = captioner.caption_clips(clips, GREEDY)
    assert greedy == captioner.caption_clips(clips, GREEDY)
    # Batched beam search gives each clip what it gets alone.
    assert [captioner.caption_clips([c])[0] for c in clips] == first


def _tiny_hf_decoder(kind: str, folder: Path) -> Path:
    from transformers import BartConfig, BartForConditionalGeneration, GPT2Config, GPT2LMHeadModel, PreTrainedModel

    from indexer.encoders.tiny import byte_level_tokenizer

    tokenizer = byte_level_tokenizer()
    torch.manual_seed(0)
    model: PreTrainedModel
    if kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=128))
    else:
        ids: dict[str, Any] = {"pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "decoder_start_token_id": 0}
        sizes: dict[str, Any] = {
            "encoder_attention_heads": 2,
            "decoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "decoder_ffn_dim": 64,
        }
        config = BartConfig(
            vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1, max_position_embeddings=128,
            **sizes, **ids,
        )  # fmt: skip
        model = BartForConditionalGeneration(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["gpt2", "bart"])
def test_pretrained_style_decoders_train_and_decode_through_the_same_code(kind: str, tmp_path: Path) -> None:
    from dataclasses import replace

    source = _tiny_hf_decoder(kind, tmp_path / kind)
    result = train_toy(tmp_path / "out", decoder=str(source), cfg=replace(SMALL_CFG, epochs=3, lr=3e-3))
    losses = [e["loss"] for e in result.history.epochs]
    assert losses[-1] < losses[0]
    captioner = load_captioner(result.best_dir, encoder=tiny_mini())
    assert captioner.model.seq2seq is (kind == "bart")
    clips = [np.zeros(SR, np.float32), toy_clips(2)[1]["clip0-1"]]
    captions = captioner.caption_clips(clips)
    assert captions == captioner.caption_clips(clips) and all(isinstance(c, str) for c in captions)


# --- bad input -------------------------------------------------------------------------------------


def test_silent_short_and_two_hour_files_caption(trained: Path, tmp_path: Path) -> None:
    captioner = load_captioner(trained, encoder=tiny_mini(window_s=10.0))
    sf.write(tmp_path / "silent.wav", np.zeros(3 * SR, np.float32), SR)
    sf.write(tmp_path / "blip.wav", 0.1 * np.ones(round(0.05 * SR), np.float32), SR)
    long_path = tmp_path / "two_hours.wav"
    with sf.SoundFile(long_path, "w", SR, 1, subtype="PCM_16") as f:
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(600 * SR) / SR)).astype(np.float32)
        for _ in range(12):  # 12 x 10 min, written in blocks
            f.write(tone)
    for name in ("silent.wav", "blip.wav"):
        result = captioner.caption_file(tmp_path / name)
        assert result.mode == "whole" and result.caption and not result.segments
    captioner.batch_size = 256
    long = captioner.caption_file(long_path)
    assert long.mode == "segments" and long.caption
    assert long.duration_s == pytest.approx(7200.0)
    assert long.segments[0].start_s == 0.0 and long.segments[-1].end_s == pytest.approx(7200.0)
    assert all(a.end_s == b.start_s for a, b in zip(long.segments, long.segments[1:], strict=False))


def test_empty_file_fails_with_a_clear_error(trained: Path, tmp_path: Path) -> None:
    from indexer.errors import AudioDecodeError

    captioner = load_captioner(trained, encoder=tiny_mini())
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty file"):
        captioner.caption_file(tmp_path / "empty.wav")


def test_dataset_with_missing_audio_names_the_files(tmp_path: Path) -> None:
    sf.write(tmp_path / "here.wav", np.zeros(SR, np.float32), SR)
    (tmp_path / "captions.csv").write_text("path,caption\nhere.wav,a sound\ngone1.wav,x\ngone2.wav,y\n")
    with pytest.raises(CaptioningError, match=r"2 of 3 audio files are missing") as info:
        load_caption_data(str(tmp_path / "captions.csv"))
    assert "gone1.wav" in str(info.value) and "gone2.wav" in str(info.value)
    assert [c.key for c in load_caption_data(str(tmp_path / "captions.csv"), skip_missing=True)] == [
        str(tmp_path / "here.wav")
    ]


# --- command line ----------------------------------------------------------------------------------


def test_caption_cli_json(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from api.cli import main

    # The CLI loads the encoder by the spec saved in the captioner: point it at a saved copy of the tiny one.
    meta_path = trained / "captioner.json"
    folder = tmp_path / "captioner"
    folder.mkdir()
    (folder / "captioner.safetensors").write_bytes((trained / "captioner.safetensors").read_bytes())
    meta = json.loads(meta_path.read_text())
    meta["spec"]["encoder"] = str(save_mini(tiny_mini().model, tmp_path / "enc"))
    meta["spec"]["encoder_model_id"] = Path(meta["spec"]["encoder"]).resolve().as_posix()
    (folder / "captioner.json").write_text(json.dumps(meta))
    sf.write(tmp_path / "a.wav", 0.1 * np.random.default_rng(0).standard_normal(SR).astype(np.float32), SR)
    (tmp_path / "bad.wav").write_bytes(b"")
    code = main(["caption", str(tmp_path / "a.wav"), str(tmp_path / "bad.wav"), "--captioner", str(folder), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out[0]["path"] == str(tmp_path / "a.wav") and isinstance(out[0]["caption"], str) and out[0]["caption"]
    assert out[1]["caption"] is None and "empty file" in out[1]["error"]
    assert isinstance(Captioner, type)


def test_catalog_captions_are_found_by_full_text_search(trained: Path, tmp_path: Path) -> None:
    from sqlalchemy import insert, select

    from captioning.catalog import caption_catalog_files
    from storage import fulltext
    from storage.catalog import Catalog
    from storage.schema import FileRow, Root

    sf.write(tmp_path / "a.wav", 0.1 * np.ones(SR, np.float32), SR)
    (tmp_path / "gone.wav").write_bytes(b"")  # fails to caption: logged, the run goes on
    captioner = load_captioner(trained, encoder=tiny_mini())
    with Catalog.open(tmp_path / "home") as catalog:
        with catalog.session() as s:
            root = s.execute(insert(Root).values(path=str(tmp_path)).returning(Root.id)).scalar_one()
            for name in ("a.wav", "gone.wav"):
                s.execute(
                    insert(FileRow).values(root_id=root, path=str(tmp_path / name), size=1, mtime_ns=1, status="ok")
                )
        done = caption_catalog_files(catalog, captioner)
        assert list(done.values()) == [captioner.caption(tmp_path / "a.wav")]
        (fid,) = done
        word = max(fulltext.query_words(done[fid]), key=len)
        with catalog.session() as s:
            assert s.scalar(select(FileRow.caption).where(FileRow.id == fid)) == done[fid]
        assert fid in [hit for hit, _ in catalog.text.search(word, 10)]

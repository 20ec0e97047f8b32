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

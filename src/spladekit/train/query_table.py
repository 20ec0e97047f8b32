"""A trainable static query side (inference-free SPLADE): each query is its own tokens, weighted by a per-token table.

The rule is ``encode.static_query.QueryTable``'s, so that what training scores is what the saved model serves:
the query as the model reads it (prompt, lower-casing), the table's tokenizer without [CLS]/[SEP], each distinct
token once, weight ``relu(table[token])``. The table is an ``nn.Parameter`` trained jointly with the document
encoder, with its own learning rate (``query_table_learning_rate``); saved tables are clamped at 0, which is what
the ReLU made of them, so sentence-transformers (which applies no ReLU to a SparseStaticEmbedding) gives equal
vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..encode.static_query import QueryTable
from ..errors import InputError
from .config import TrainConfig
from .rows import TrainRow


class TrainableQueryTable(torch.nn.Module):
    """The table as a parameter (V,), its tokenizer and rule; ``forward`` gives differentiable query vectors."""

    def __init__(self, table: QueryTable, max_query_length: int) -> None:
        super().__init__()
        if table.add_special_tokens:
            raise InputError(
                "this model's query table adds [CLS]/[SEP] (an OpenSearch idf.json); training saves "
                "sentence-transformers tables, which never do: start from an IDF table instead (query_side = 'idf')"
            )
        self.weight = torch.nn.Parameter(torch.tensor(np.asarray(table.weights, dtype=np.float32)))
        self.source = table
        self.max_query_length = int(max_query_length)

    def token_ids(self, model_texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each (prompted, lower-cased) query, truncated at ``max_query_length``."""
        ids, _ = self.source.token_rows(list(model_texts)) if model_texts else ([], [])
        return [row[: self.max_query_length] for row in ids]

    def forward(self, enc, queries: Sequence[str]) -> torch.Tensor:
        """Query vectors (B, V): ``relu(table[t])`` at each distinct token t of each query, 0 elsewhere."""
        mtexts, non_empty = enc.model_texts(list(queries), "query")
        ids = self.token_ids([mtexts[i] for i in non_empty])
        mask = torch.zeros(
            len(queries), self.weight.shape[0], dtype=self.weight.dtype, device=self.weight.device
        )
        for i, row in zip(non_empty, ids):
            if row:
                mask[i, torch.tensor(row, dtype=torch.long, device=mask.device)] = 1.0
        return mask * torch.relu(self.weight)

    def to_query_table(self) -> QueryTable:
        """The table as the saved model will have it: weights clamped at 0 (what the ReLU scored), same rule."""
        w = self.weight.detach().clamp_min(0).cpu().numpy().astype(np.float32)
        src = self.source
        return QueryTable(w, src.tokenizer, False, src.max_length, src.layout, "trained query table")


def start_table(
    cfg: TrainConfig, enc, rows: list[TrainRow], resumed: bool, log: Callable[[str], Any]
) -> QueryTable | None:
    """The query table a run starts from, or None when queries go through the masked-LM.

    ``auto`` keeps a start model's own table (an inference-free folder) and is ``mlm`` otherwise; ``table`` needs
    one; ``idf`` counts BM25 idf over eval_data's corpus (else the training rows' documents). A resumed run
    always continues the checkpoint's table.
    """
    own = enc.query_table if enc.spec.query_side is not None else None
    side = cfg.query_side
    if resumed and own is not None:
        return own
    if side == "mlm" or (side == "auto" and own is None):
        if own is not None:
            enc.spec.query_side = None  # the folder's table is dropped: queries go through the masked-LM
            log("query side: masked-LM (the start model's query table is not used: query_side = 'mlm')")
        return None
    if side in ("table", "auto"):
        if own is None:
            raise InputError(
                f"query_side = 'table': the start model {cfg.model or 'splade-tiny'} has no query table "
                "(use query_side = 'idf' to start one from IDF)"
            )
        return own
    from ..encode.idf import build_idf_table

    if cfg.eval_data:
        from ..data import load_beir

        texts = [d.full_text for d in load_beir(cfg.eval_data, cfg.holdout_split).corpus.values()]
        where = f"the corpus of {cfg.eval_data}"
    else:
        texts = list(dict.fromkeys(t for r in rows for t in (r.positive, *r.negatives)))
        where = f"the {len(texts)} distinct documents of the training rows"
    table, summary = build_idf_table(enc, texts=texts)
    log(
        f"query side: IDF table over {where} ({summary['documents']} documents, {summary['terms_seen']} terms seen)"
    )
    return table

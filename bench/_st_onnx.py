"""What sentence-transformers' ``backend="onnx"`` runs for a SparseEncoder, built by hand where it cannot install.

``SparseEncoder(..., backend="onnx")`` exports the masked-LM with optimum (logits out), runs it on onnxruntime and
pools with its own ``SpladePooling`` in torch. optimum-onnx's only release needs transformers < 4.58 while
sentence-transformers here needs >= 5, so this does the same steps: the same export (the masked-LM, ``logits`` out,
dynamic batch and length, token_type_ids as an input), an onnxruntime session (CPU, all graph optimisations),
batches sorted by length as ``encode_document`` sorts them, and sentence-transformers' ``SpladePooling`` itself.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np


class MlmOnnxReference:
    """The masked-LM on onnxruntime + sentence-transformers' SpladePooling (``encode_document`` like ST's)."""

    def __init__(self, model_path: str, folder: Path, threads: int) -> None:
        import onnxruntime as ort
        import torch
        from sentence_transformers.sparse_encoder.modules import SpladePooling
        from transformers import AutoModelForMaskedLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForMaskedLM.from_pretrained(model_path, dtype=torch.float32).eval()
        enc = self.tokenizer(["a warm up text", "b"], padding=True, return_tensors="pt")
        names = ["input_ids", "attention_mask", "token_type_ids"]
        axes = {n: {0: "batch", 1: "length"} for n in names}
        axes["logits"] = {0: "batch", 1: "length"}
        path = folder / "mlm.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]),
                str(path),
                input_names=names,
                output_names=["logits"],
                dynamic_axes=axes,
                opset_version=18,
                dynamo=False,
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.pooling = SpladePooling(pooling_strategy="max")
        self.vocab = int(model.config.vocab_size)

    def encode_document(self, docs: list[str], batch_size: int = 32):
        """Dense (n, vocab) torch tensor of SPLADE vectors, rows in input order."""
        import torch

        order = np.argsort([-len(d) for d in docs], kind="stable")
        out = torch.zeros((len(docs), self.vocab))
        for s in range(0, len(docs), batch_size):
            idx = order[s : s + batch_size]
            enc = self.tokenizer(
                [docs[i] for i in idx], padding=True, truncation=True, max_length=512, return_tensors="np"
            )
            feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
            logits = self.session.run(["logits"], feeds)[0]
            feats = {
                "token_embeddings": torch.from_numpy(logits),
                "attention_mask": torch.from_numpy(feeds["attention_mask"]),
            }
            with torch.inference_mode():
                out[torch.from_numpy(idx)] = self.pooling(feats)["sentence_embedding"]
        return out

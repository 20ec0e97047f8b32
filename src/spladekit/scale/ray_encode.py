"""Distributed batch encoding with Ray Data: a corpus in, parquet shards (id, term ids, weights, text) out.

Long documents follow one ``LongDocs`` setting (``max`` by default; ``truncate``; ``passages``: a row per window,
see ``shards``), recorded in the manifest's model info; a document's passages are always written to one shard.

The driver only plans: it splits the input into shards of ``shard_size`` records (byte offsets for JSONL, row
ranges for parquet) and skips the shards the manifest already lists as finished. Ray Data then maps the shard
descriptors through a pool of actors (``map_batches`` with a callable class, so each worker loads the model
once); each actor reads its slice of the input, encodes it and writes its shard atomically. The driver records
each finished shard in ``_manifest.json`` as results stream back, so an interrupted run resumes where it stopped.

On a cluster (``address=...``), INPUT and OUTPUT must be paths that every Ray node can reach (a shared file
system), and spladekit must be installed on the workers.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from ..encode.windows import TRUNCATE, LongDocs, check_long_docs
from ..errors import InputError, SpladekitError
from . import shards
from .slices import DEFAULT_SHARD_SIZE, ShardPlan, plan_shards, read_slice, resolve_input


# ----------------------------------------------------------------------------- the worker
@dataclass
class EncodeJob:
    """What every worker needs to know: the model and its settings, the input and the output folder."""

    model: str | None
    mode: str
    kind: str
    batch_size: int
    max_active_dims: int | None
    threads: int
    input_path: str
    fmt: str
    output: str
    long_docs: dict | None = None  # ``LongDocs.record()``; None: truncate (queries)


class ShardEncoder:
    """Ray Data callable class: one model per actor; each call encodes and writes the shards of its batch."""

    def __init__(self, job: dict) -> None:
        from ..encode import SpladeEncoder

        job = EncodeJob(**job)
        self.encoder = SpladeEncoder.load(job.model, mode=job.mode, threads=job.threads)
        self.kind = job.kind
        self.batch_size = job.batch_size
        self.max_active_dims = job.max_active_dims
        self.input_path = Path(job.input_path)
        self.fmt = job.fmt
        self.output = Path(job.output)
        self.long_docs = self.encoder.document_settings(LongDocs.from_record(job.long_docs))
        if not (self.output / shards.VOCAB).is_file():
            shards.write_vocab(self.output, self.encoder.vocab)

    def __call__(self, batch: dict) -> dict:
        result: dict[str, list] = {
            "name": [],
            "number": [],
            "start": [],
            "rows": [],
            "nnz": [],
            "truncated": [],
            "windows": [],
            "windowed": [],
            "passages": [],
            "error": [],
        }
        for i in range(len(batch["number"])):
            plan = ShardPlan(*(int(batch[k][i]) for k in ("number", "start", "rows", "offset", "line")))
            name = shards.shard_name(plan.number)
            counts = {"nnz": 0, "truncated": 0, "windows": 0, "windowed": 0, "passages": -1}
            error = ""
            try:
                counts.update(self.encode_shard(plan, self.output / name))
            except SpladekitError as e:  # reported to the driver as one line, not a remote traceback
                error = str(e)
            for key, value in (
                ("name", name),
                ("number", plan.number),
                ("start", plan.start),
                ("rows", plan.rows),
                *counts.items(),
                ("error", error),
            ):
                result[key].append(value)
        return result

    def encode_shard(self, plan: ShardPlan, path: Path) -> dict:
        """Read, encode and write one shard; its counts (``passages``: rows of a passages shard, else -1)."""
        records = read_slice(self.input_path, self.fmt, plan, self.kind)
        ids, texts = [r[0] for r in records], [r[1] for r in records]
        meta = [r[2] for r in records] if any(r[2] is not None for r in records) else None
        options = {"batch_size": self.batch_size, "max_active_dims": self.max_active_dims}
        n_rows = -1
        if self.kind == "document" and self.long_docs.strategy == "passages":
            dup = _first_duplicate(ids)
            if dup is not None:  # a document's passages must be one run of rows
                raise InputError(
                    f"{self.input_path}: duplicate document id {dup!r} in records "
                    f"{plan.start + 1}-{plan.start + plan.rows} (a passages run needs distinct ids)"
                )
            p = self.encoder.encode_passages(texts, long_docs=self.long_docs, **options)
            vectors, owner = p.vectors, p.owner.tolist()
            numbers: list[int] = []
            for j, o in enumerate(owner):
                numbers.append(numbers[-1] + 1 if j and owner[j - 1] == o else 0)
            first = [n == 0 for n in numbers]
            shards.write_shard(
                path,
                [ids[o] for o in owner],
                vectors,
                texts=[texts[o] if f else None for o, f in zip(owner, first)],
                metadata=None if meta is None else [meta[o] if f else None for o, f in zip(owner, first)],
                passages=(numbers, [s[0] for s in p.spans], [s[1] for s in p.spans]),
            )
            n_rows = len(vectors)
        else:
            vectors = self.encoder.encode(texts, kind=self.kind, long_docs=self.long_docs, **options)
            shards.write_shard(path, ids, vectors, texts=texts, metadata=meta)
        report = self.encoder.last_report
        return {
            "nnz": vectors.nnz,
            "truncated": report.truncated,
            "windows": report.windows,
            "windowed": report.windowed,
            "passages": n_rows,
        }


def _first_duplicate(ids: list[str]) -> str | None:
    seen: set[str] = set()
    for x in ids:
        if x in seen:
            return x
        seen.add(x)
    return None


# ----------------------------------------------------------------------------- the driver
def _model_info(model: str | None, mode: str) -> dict:
    from ..encode.loading import BUNDLED_NAME, read_spec, resolve_model, weights_sha256
    from ..encode.static_query import load_query_table

    root = resolve_model(model)
    name = BUNDLED_NAME if model is None or str(model) == BUNDLED_NAME else str(model)
    spec = read_spec(root, name)
    dim = int(json.loads((spec.transformer_path / "config.json").read_text(encoding="utf-8"))["vocab_size"])
    return {
        "name": spec.name,
        "path": str(spec.root),
        "weights_sha256": weights_sha256(spec.transformer_path),
        "max_length": spec.max_length,
        "mode": mode,
        "vocab_size": dim,
        "query_side": load_query_table(spec.query_side, dim, spec.max_length).record()
        if spec.query_side is not None
        else {"kind": "mlm"},
    }


def _start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Connect to ``address`` or start a private local cluster bound to loopback; True when we started Ray."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray Data: pip install 'ray[data]' (or spladekit[ray])") from None
    if ray.is_initialized():
        return False
    import logging

    common = {"logging_level": logging.WARNING, "log_to_driver": False, "include_dashboard": False}
    if address:
        try:
            ray.init(address=address, **common)
        except Exception as e:  # noqa: BLE001 - connection failures come in many types
            raise InputError(
                f"cannot connect to the Ray cluster at {address} ({str(e).splitlines()[0]})"
            ) from None
    else:
        ray.init(
            address="local",
            num_cpus=num_cpus or os.cpu_count() or 1,
            _node_ip_address="127.0.0.1",
            object_store_memory=256 * 1024**2,
            **common,
        )
    return True


def encode_with_ray(
    input: Path,
    output: Path,
    *,
    model: str | None = None,
    query: bool = False,
    batch_size: int = 32,
    mode: str = "exact",
    max_active_dims: int | None = None,
    address: str | None = None,
    num_workers: int | None = None,
    cpus_per_worker: int = 1,
    shard_size: int = DEFAULT_SHARD_SIZE,
    long_docs: str | LongDocs | None = None,
    window: int | None = None,
    stride: int | None = None,
    verbose: bool = True,
) -> dict:
    """Encode a JSONL / parquet corpus (or BEIR folder) into a resumable shards folder with Ray Data.

    Each worker encodes with ``cpus_per_worker`` torch threads. Finished shards (listed in the output's
    manifest) are skipped, so rerunning after an interruption only encodes what is missing; a manifest written
    with a different input, model, mode, pruning, shard size or long-document setting is an error. Returns the
    manifest.

    ``long_docs`` (with ``window`` and ``stride``, or a ``LongDocs``): how documents longer than one window are
    encoded, ``max`` by default; ``passages`` writes a row per passage (see ``shards``). Queries are truncated.
    """
    from ..encode.base import check_mode

    check_mode(mode)
    if batch_size < 1:
        raise InputError("batch_size must be at least 1")
    if cpus_per_worker < 1:
        raise InputError("cpus_per_worker must be at least 1")
    if shard_size < 1:
        raise InputError("shard_size must be at least 1")
    if max_active_dims is not None and max_active_dims < 1:
        raise InputError("max_active_dims must be at least 1")
    src, fmt = resolve_input(Path(input))
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise InputError(f"{output}: exists and is not a folder (--ray writes a folder of parquet shards)")
    if output.is_dir() and not shards.is_shards_folder(output) and any(output.iterdir()):
        raise InputError(f"{output}: folder is not empty and holds no shards: pick a new output folder")
    kind = "query" if query else "document"
    info = _model_info(model, mode)
    info["long_docs"] = _long_docs(long_docs, window, stride, query, info["max_length"]).record()
    settings = {
        "input": str(src.resolve()),
        "input_bytes": src.stat().st_size,
        "format": fmt,
        "kind": kind,
        "shard_size": shard_size,
        "weights_sha256": info["weights_sha256"],
        "mode": mode,
        "max_active_dims": max_active_dims,
        "long_docs": info["long_docs"],
    }
    done: dict[str, dict] = {}
    if shards.is_shards_folder(output):
        old = shards.read_manifest(output)
        # a folder written before long-document settings truncated
        was = {"long_docs": TRUNCATE.record(), **old.get("settings", {})}
        diff = [k for k, v in settings.items() if was.get(k) != v]
        if diff:
            raise InputError(
                f"{output}: holds shards written with a different {', '.join(diff)}; use a new output folder"
            )
        done = {s["name"]: s for s in old["shards"] if (output / s["name"]).is_file()}
    plans = plan_shards(src, fmt, shard_size)
    if not plans:
        raise InputError(f"{src}: no records to encode")
    manifest = {
        "format": shards.FORMAT,
        "kind": kind,
        "dim": info["vocab_size"],
        "model": info,
        "settings": settings,
        "shard_size": shard_size,
        "total_shards": len(plans),
        "total_rows": sum(p.rows for p in plans),
        "shards": sorted(done.values(), key=lambda s: s["name"]),
        "complete": False,
    }
    todo = [p for p in plans if shards.shard_name(p.number) not in done]
    shards.write_manifest(output, manifest)
    skipped = len(plans) - len(todo)
    if todo:
        job = EncodeJob(
            model=model,
            mode=mode,
            kind=kind,
            batch_size=batch_size,
            max_active_dims=max_active_dims,
            threads=cpus_per_worker,
            input_path=str(src.resolve()),
            fmt=fmt,
            output=str(output.resolve()),
            long_docs=info["long_docs"],
        )
        _run(job, todo, manifest, address=address, num_workers=num_workers, verbose=verbose)
    manifest["complete"] = len(manifest["shards"]) == len(plans)
    shards.write_manifest(output, manifest)
    if verbose:
        rows = sum(s["rows"] for s in manifest["shards"])
        windowed = sum(s.get("windowed", 0) for s in manifest["shards"])
        what = f"{rows} documents" + (
            f" ({sum(s['passages'] for s in manifest['shards'])} passages)"
            if info["long_docs"]["strategy"] == "passages"
            else ""
        )
        print(
            f"wrote {len(todo)} shard(s), skipped {skipped} finished; {what} in {output}"
            + (f"; {windowed} longer than one window" if windowed else ""),
            file=sys.stderr,
        )
    return manifest


def _long_docs(long_docs, window, stride, query: bool, max_length: int) -> LongDocs:
    """The run's long-document setting, checked against the model; queries are always truncated."""
    if query:
        if (long_docs not in (None, "truncate") and long_docs != TRUNCATE) or window or stride is not None:
            raise InputError(
                "long-document settings apply to documents; queries are truncated (leave them out)"
            )
        return TRUNCATE
    return check_long_docs(long_docs, window, stride, max_length=max_length)


def _run(
    job: EncodeJob, todo: list[ShardPlan], manifest: dict, *, address, num_workers, verbose: bool
) -> None:
    """Encode the shards ``todo`` on a Ray actor pool, recording each finished shard in the manifest as it lands."""
    output = Path(job.output)
    cpus_per_worker = job.threads
    started = _start_ray(address, None)
    import logging

    import ray
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = verbose
        ctx.execution_options.verbose_progress = False
        if num_workers is None:
            # Leave a CPU for Ray Data's own read stage: a pool that holds every CPU can starve it.
            cpus = int(ray.cluster_resources().get("CPU", 1))
            num_workers = max(1, (cpus - 1) // cpus_per_worker)
        num_workers = max(1, min(int(num_workers), len(todo)))
        items = [asdict(p) for p in todo]
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            ShardEncoder,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=num_workers),
            num_cpus=cpus_per_worker,
            fn_constructor_kwargs={"job": asdict(job)},
        )
        errors = []
        for row in ds.iter_rows():
            if row["error"]:
                errors.append(str(row["error"]))
                continue
            entry = {k: int(row[k]) for k in ("start", "rows", "nnz", "truncated", "windows", "windowed")}
            entry["name"] = str(row["name"])
            if int(row["passages"]) >= 0:
                entry["passages"] = int(row["passages"])
            manifest["shards"] = sorted(
                [s for s in manifest["shards"] if s["name"] != entry["name"]] + [entry],
                key=lambda s: s["name"],
            )
            shards.write_manifest(output, manifest)
        if errors:
            more = f" (and {len(errors) - 1} more shard errors)" if len(errors) > 1 else ""
            raise InputError(errors[0] + more)
    finally:
        if started:
            ray.shutdown()

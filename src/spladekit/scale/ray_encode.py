"""Distributed batch encoding with Ray Data: a corpus in, parquet shards (id, term ids, weights, text) out.

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
            "error": [],
        }
        for i in range(len(batch["number"])):
            plan = ShardPlan(*(int(batch[k][i]) for k in ("number", "start", "rows", "offset", "line")))
            name = shards.shard_name(plan.number)
            nnz = truncated = 0
            error = ""
            try:
                records = read_slice(self.input_path, self.fmt, plan, self.kind)
                vectors = self.encoder.encode(
                    [r[1] for r in records],
                    kind=self.kind,
                    batch_size=self.batch_size,
                    max_active_dims=self.max_active_dims,
                )
                truncated = self.encoder.last_report.truncated
                shards.write_shard(
                    self.output / name,
                    [r[0] for r in records],
                    vectors,
                    texts=[r[1] for r in records],
                    metadata=[r[2] for r in records] if any(r[2] is not None for r in records) else None,
                )
                nnz = vectors.nnz
            except SpladekitError as e:  # reported to the driver as one line, not a remote traceback
                error = str(e)
            for key, value in (
                ("name", name),
                ("number", plan.number),
                ("start", plan.start),
                ("rows", plan.rows),
                ("nnz", nnz),
                ("truncated", truncated),
                ("error", error),
            ):
                result[key].append(value)
        return result


# ----------------------------------------------------------------------------- the driver
def _model_info(model: str | None, mode: str) -> dict:
    from ..encode.loading import BUNDLED_NAME, read_spec, resolve_model, weights_sha256

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
    verbose: bool = True,
) -> dict:
    """Encode a JSONL / parquet corpus (or BEIR folder) into a resumable shards folder with Ray Data.

    Each worker encodes with ``cpus_per_worker`` torch threads. Finished shards (listed in the output's
    manifest) are skipped, so rerunning after an interruption only encodes what is missing; a manifest written
    with a different input, model, mode, pruning or shard size is an error. Returns the manifest.
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
    settings = {
        "input": str(src.resolve()),
        "input_bytes": src.stat().st_size,
        "format": fmt,
        "kind": kind,
        "shard_size": shard_size,
        "weights_sha256": info["weights_sha256"],
        "mode": mode,
        "max_active_dims": max_active_dims,
    }
    done: dict[str, dict] = {}
    if shards.is_shards_folder(output):
        old = shards.read_manifest(output)
        diff = [k for k, v in settings.items() if old.get("settings", {}).get(k) != v]
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
        )
        _run(job, todo, manifest, address=address, num_workers=num_workers, verbose=verbose)
    manifest["complete"] = len(manifest["shards"]) == len(plans)
    shards.write_manifest(output, manifest)
    if verbose:
        rows = sum(s["rows"] for s in manifest["shards"])
        print(
            f"wrote {len(todo)} shard(s), skipped {skipped} finished; {rows} vectors in {output}",
            file=sys.stderr,
        )
    return manifest


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
            entry = {k: int(row[k]) for k in ("start", "rows", "nnz", "truncated")}
            entry["name"] = str(row["name"])
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

"""CLI commands of the training area: ``train``, ``soup``, ``mine``, ``teacher``."""

from __future__ import annotations

from pathlib import Path

import typer

from .options import batch_size_option, index_option, json_option, model_option, output_option


def register(app: typer.Typer) -> None:
    """Add ``train``, ``soup``, ``mine`` and ``teacher`` to ``app``."""

    @app.command("train")
    def train_command(
        config: Path = typer.Option(..., "--config", "-c", help="TOML or YAML training config."),
        resume: Path | None = typer.Option(None, "--resume", help="Checkpoint folder to resume from."),
        output: Path | None = typer.Option(
            None, "--output", "-o", help="Output folder (overrides output_dir)."
        ),
        max_steps: int | None = typer.Option(None, "--max-steps", help="Stop after this many steps."),
        seed: int | None = typer.Option(None, "--seed", help="Overrides seed (for repeat runs)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        """Train (distil) a SPLADE model as the config says; checkpoints are SparseEncoder folders."""
        from ..train import load_config, train

        overrides: dict = {}
        if resume is not None:
            overrides["resume_from"] = str(resume)
        if output is not None:
            overrides["output_dir"] = str(output)
        if max_steps is not None:
            overrides["max_steps"] = max_steps
        if seed is not None:
            overrides["seed"] = seed
        cfg = load_config(config, overrides)
        res = train(cfg, show_progress=not quiet, log=lambda m: typer.echo(m, err=True))
        typer.echo(f"trained {res.steps} steps in {res.seconds / 60:.1f} min")
        if res.best_checkpoint:
            typer.echo(f"best checkpoint: {res.best_checkpoint}")
        if res.last_checkpoint:
            typer.echo(f"last checkpoint: {res.last_checkpoint}")

    @app.command("soup")
    def soup_command(
        checkpoints: list[Path] = typer.Argument(
            ..., help="Checkpoint folders fine-tuned from the same model."
        ),
        output: Path = output_option("Folder to write the averaged model to."),
        weight: list[float] | None = typer.Option(
            None, "--weight", "-w", help="One per checkpoint, in order (default: uniform)."
        ),
    ) -> None:
        """Average the weights of several checkpoints (a "model soup"), e.g. runs of one recipe with other seeds."""
        from ..train import average_checkpoints

        out = average_checkpoints(checkpoints, output, weight or None)
        typer.echo(f"averaged {len(checkpoints)} checkpoints into {out}")

    @app.command("mine")
    def mine_command(
        data_dir: Path = typer.Argument(..., help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)."),
        output: Path = output_option("JSONL file of training rows to write."),
        split: str = typer.Option("train", "--split", help="qrels split whose judged pairs become rows."),
        index: Path | None = index_option(
            "Index folder: reused if it exists, built with --model otherwise.", required=False
        ),
        model: str | None = model_option(),
        n: int = typer.Option(4, "-n", "--negatives", help="Hard negatives per row."),
        skip_top: int = typer.Option(0, "--skip-top", help="Skip this many top non-positive hits."),
        retriever: list[str] | None = typer.Option(
            None,
            "--retriever",
            help="splade (the model; default) or bm25; repeat to interleave both lists, each document once.",
        ),
        batch_size: int = batch_size_option(),
    ) -> None:
        """Mine hard negatives for every judged (query, positive) pair with the current model and / or BM25."""
        from ..train import mine_negatives

        rows = mine_negatives(
            data_dir,
            output,
            split=split,
            model=model,
            index_dir=index,
            n=n,
            skip_top=skip_top,
            batch_size=batch_size,
            retrievers=retriever or ["splade"],
            show_progress=True,
            log=lambda m: typer.echo(m, err=True),
        )
        typer.echo(f"wrote {rows} rows to {output}")

    @app.command("teacher")
    def teacher_command(
        data: Path = typer.Argument(..., help="JSONL training rows (from `spladekit mine`)."),
        output: Path | None = output_option(
            "JSONL file to write, rows with 'scores' (optional with --report).", required=False
        ),
        teacher: Path | None = typer.Option(
            None,
            "--teacher",
            "-t",
            help="One teacher: cross-encoder or sentence-transformers folder (default: all-MiniLM-L6-v2).",
        ),
        scorer: list[str] | None = typer.Option(
            None,
            "--scorer",
            help="minilm, bm25, splade, or a cross-encoder / bi-encoder folder or hub id; repeat for an ensemble.",
        ),
        weights: str | None = typer.Option(
            None, "--weights", help="One weight per --scorer, in order, e.g. 1,0.5,0.5 (default: 1 each)."
        ),
        fit_weights: bool = typer.Option(
            False, "--fit-weights", help="Fit the weights on held-out queries (not the reported ones)."
        ),
        normalise: str | None = typer.Option(
            None,
            "--normalise",
            help="Per-row normalisation before weighting: zscore, minmax or none (default: zscore for "
            "several scorers, none for one).",
        ),
        report: bool = typer.Option(
            False, "--report", help="Print each scorer's and the ensemble's nDCG@10 and pairwise accuracy."
        ),
        json_out: bool = json_option("Print the report as JSON (implies --report)."),
        holdout_queries: int = typer.Option(
            100,
            "--holdout-queries",
            help="Queries held out for the report (as a config's holdout_queries).",
            min=0,
        ),
        fit_queries: int = typer.Option(
            100, "--fit-queries", help="Other queries the weights are fitted on.", min=1
        ),
        fit_metric: str = typer.Option("ndcg@10", "--fit-metric", help="ndcg@10 or pairwise_accuracy."),
        seed: int = typer.Option(
            42, "--seed", help="Draw of the held-out queries (as a config's split_seed)."
        ),
        corpus: Path | None = typer.Option(
            None,
            "--corpus",
            help="BM25's collection: BEIR folder or JSONL corpus (default: the rows' passages).",
        ),
        qrels: Path | None = typer.Option(
            None, "--qrels", help="Judge held-out candidates by this qrels TSV (default: positive relevant)."
        ),
        model: str | None = model_option("The splade scorer's model (default: bundled splade-tiny)."),
        similarity: str = typer.Option("cosine", "--similarity", help="Bi-encoder score: cosine or dot."),
        batch_size: int = batch_size_option(64),
    ) -> None:
        """Score every (query, passage) of the rows with a teacher or an ensemble of scorers; report their quality."""
        import json

        from ..errors import InputError
        from ..train.ensemble import parse_weights
        from ..train.ensemble_run import score_with_ensemble
        from ..train.scorers import parse_scorers
        from ..train.teacher_report import format_report

        if teacher is not None and scorer:
            raise InputError("--teacher and --scorer: give the teacher as one more --scorer")
        report = report or json_out
        scorers = scorer or [str(teacher) if teacher is not None else "minilm"]
        w = None if weights is None else parse_weights(weights, [s.name for s in parse_scorers(scorers)])
        res = score_with_ensemble(
            data,
            output,
            scorers,
            weights=None if w is None else w.tolist(),
            fit=fit_weights,
            normalise=normalise,
            report=report,
            holdout_queries=holdout_queries,
            fit_queries=fit_queries,
            seed=seed,
            fit_metric=fit_metric,
            corpus=corpus,
            qrels=qrels,
            model=model,
            similarity=similarity,
            batch_size=batch_size,
            show_progress=not json_out,
            log=lambda m: typer.echo(m, err=True),
        )
        if res.report is not None:
            typer.echo(json.dumps(res.report, indent=2) if json_out else format_report(res.report))
        if output is not None:
            how = ", ".join(f"{n} {w:g}" for n, w in zip(res.scorers, res.weights))
            where = f" ({how}; {res.normalise})" if len(res.scorers) > 1 else ""
            typer.echo(f"wrote {res.rows_written} scored rows to {output}{where}", err=json_out)

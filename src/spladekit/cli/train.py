"""CLI commands of the training area: ``train``, ``soup``, ``mine``, ``teacher``."""

from __future__ import annotations

from pathlib import Path

import typer

from .options import batch_size_option, index_option, model_option, output_option


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
        batch_size: int = batch_size_option(),
    ) -> None:
        """Mine hard negatives for every judged (query, positive) pair with the current model."""
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
            show_progress=True,
            log=lambda m: typer.echo(m, err=True),
        )
        typer.echo(f"wrote {rows} rows to {output}")

    @app.command("teacher")
    def teacher_command(
        data: Path = typer.Argument(..., help="JSONL training rows (from `spladekit mine`)."),
        output: Path = output_option("JSONL file to write, rows with 'scores'."),
        teacher: Path | None = typer.Option(
            None,
            "--teacher",
            "-t",
            help="Cross-encoder or sentence-transformers folder (default: all-MiniLM-L6-v2).",
        ),
        similarity: str = typer.Option("cosine", "--similarity", help="Bi-encoder score: cosine or dot."),
        batch_size: int = batch_size_option(64),
    ) -> None:
        """Score every (query, passage) of the rows with a teacher model."""
        from ..train import score_with_teacher

        rows = score_with_teacher(
            data, output, teacher, similarity=similarity, batch_size=batch_size, show_progress=True
        )
        typer.echo(f"wrote {rows} scored rows to {output}")

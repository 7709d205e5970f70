"""``attn-export predict``: run the deployed model on ``.npz`` / ``.ts`` / ``.csv`` input (torch-free)."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..runtime.dispatch import DEPLOYMENT
from ..runtime.limits import DEFAULT_BATCH, MAX_BATCH
from ..runtime.precisions import ONNX_FILES
from .common import JsonOpt, console, given, path_parser, print_json

NAME = "predict"


Precision = Enum("Precision", {name.replace("-", "_"): name for name in ONNX_FILES}, type=str)  # type: ignore[misc]


class OnLong(str, Enum):
    error = "error"
    truncate = "truncate"
    split_ = "split"  # the member name may not shadow str.split


def command(
    ctx: typer.Context,
    input_path: Annotated[str, typer.Argument(
        metavar="INPUT", help=".npz (x, lengths, optional y), .ts, or .csv: one sequence per file, a 'sequence' "
                              "column grouping rows, a directory or a glob of .csv files.")],
    directory: Annotated[Path, typer.Option(
        "--dir", help="Artefact directory or bundle (.tar.gz).",
        parser=path_parser("an artefact directory or a bundle (.tar.gz)"))] = Path("artifacts"),
    backend: Annotated[str, typer.Option(
        "--backend", metavar="NAME", help=f"auto (best for this device) or {DEPLOYMENT}; a named "
                          "backend that cannot run here is an error (exit 3).")] = "auto",
    precision: Annotated[Precision, typer.Option("--precision", help="Which artefact to run.")] = Precision.fp32,  # type: ignore[valid-type, attr-defined]
    allow_unverified: Annotated[bool, typer.Option(
        "--allow-unverified", help="Run an artefact that attn-export verify never checked.")] = False,
    on_long: Annotated[OnLong, typer.Option(
        "--on-long", help="A sequence longer than an engine's profile: error, truncate, or split into chunks.")]
    = OnLong.error,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=MAX_BATCH, help="Sequences per batch (at most the "
                                                                        "engine profile's max batch).")] = DEFAULT_BATCH,
    attention: Annotated[bool, typer.Option("--attention", help="Include attention weights in --json.")] = False,
    stream: Annotated[int | None, typer.Option(
        "--stream", metavar="CHUNK", help="Feed each sequence to model.stream.onnx CHUNK steps at a time (1 to "
                                          "1,000,000) and print the running prediction after each chunk.")] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=0, metavar="N", help="CPU threads for the backend (0 or none: the runtime's own; ONNX Runtime "
                                       "takes every core). bench times at 1.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Predict a label per sequence with DIR's model; with true labels in INPUT, print the accuracy too."""
    from ..runtime.cli import (about, open_predictor, prediction_rows, prediction_table, shown, stream_document,
                               stream_table)
    from ..runtime.inputs import accuracy, check_features, check_labels, check_width, unused_truth

    predictor, data = open_predictor(directory, input_path, stream, attention, json_out,
                                     given(ctx, "on_long", "batch_size"), backend=backend,
                                     precision=precision.value, allow_unverified=allow_unverified,
                                     batch_size=batch_size, threads=threads or None)
    with predictor:
        if not given(ctx, "backend", "precision") and (unasked := predictor.unasked()):
            predictor.notes.append(unasked)
        if (unused := unused_truth(data, predictor.head, input_path)) is not None:
            predictor.notes.append(unused)
        # named columns first: an extra or missing one is named, not counted (found by attacking)
        check_features(data.features, predictor.feature_names, input_path, data.first_rows)
        check_width(data.sequences, predictor.features, input_path)
        if predictor.head == "logits":
            check_labels(data.labels, predictor.labels, input_path)
        # a stream runs its own graph, verified on other lengths (found by review); after the checks, which
        # name the input file (the note checks the sequences too)
        beyond = predictor.beyond_judged if stream is None else predictor.beyond_streamed
        if (note := beyond(data.sequences)) is not None:
            predictor.notes.append(note)
        if stream is not None:
            document = stream_document(predictor, data.ids, data.sequences, stream, data.labels, attention)
            if json_out:
                print_json(document)
            else:
                # print, not click's echo, as below: it keeps the escaping main set (found by attacking: raw
                # UTF-8 ids on an ASCII stdout, escaped without --stream and on the device)
                print("\n".join(stream_table(document["updates"], predictor.head)))
                for note in document["notes"]:  # found by review: said on the device, not here
                    print(f"note: {note}", file=sys.stderr)
                if document["accuracy"] is not None:
                    print(f"accuracy {document['accuracy']:.4f} ({document['correct']}/{document['count']}, "
                          "each sequence's last update)", file=sys.stderr)
            return
        predictions = predictor.predict(data.sequences, on_long=on_long.value)
        head, ran = predictor.head, about(predictor)
    labelled = data.labels is not None and head == "logits"  # a model without classes has no accuracy
    acc, correct = accuracy([p.label for p in predictions], data.labels) if labelled else (None, None)
    if json_out:
        rows = prediction_rows(data.ids, predictions, data.labels, attention, head)
        print_json({**ran, "count": len(predictions), "accuracy": acc, "correct": correct, "predictions": rows})
        return
    if not sys.stdout.isatty():  # piped or redirected: the device's tab-separated rows, which a program reads
        for line in prediction_table(data.ids, predictions, head):
            print(line)  # print, not click's echo: it keeps the escaping main set for an encoding short of the text
        for note in ran["notes"]:
            print(f"note: {note}", file=sys.stderr)
        if acc is not None:
            print(f"accuracy {acc:.4f} ({correct}/{len(predictions)})", file=sys.stderr)
        return
    from rich.table import Table

    from ..errors import printable

    table = Table(title=f"{input_path}: {ran['artifact']} on {ran['backend']}")
    columns = ("label", "probability") if head == "logits" else (head,)
    for col in ("#", "id", "steps", *columns) + (("true", "") if labelled else ()):
        table.add_column(col, justify="right" if col in ("#", "steps", "probability") else "left")
    for k, (name, seq, p) in enumerate(zip(data.ids, data.sequences, predictions)):
        cells = [str(k), name, str(seq.shape[0]), *shown(p, head)]
        if labelled:
            cells += [data.labels[k], "ok" if p.label == data.labels[k] else "WRONG"]
        table.add_row(*(printable(c) for c in cells))  # the console reads no markup: 'run[left]' as it is
    console().print(table)
    said = console(stderr=True)  # as --stream and the device say them: stdout holds the predictions alone
    for note in ran["notes"]:
        said.print(f"note: {note}")
    if acc is not None:
        said.print(f"accuracy {acc:.4f} ({correct}/{len(predictions)})")

"""The device's command line: what a bundle ships and its README documents.

    python -m attn_export.runtime verify  DIR [--backends auto|NAMES] [--set verify.key=value] [--json]
    python -m attn_export.runtime predict DIR INPUT [--precision P] [--backend NAME] [--json]
    python -m attn_export.runtime build   DIR [--fp16 | --int8] [--target JETPACK] [--max-batch N]
                                              [--min-seq/--opt-seq/--max-seq N]
    python -m attn_export.runtime info    DIR [--target T] [--json]
    python -m attn_export.runtime unpack  BUNDLE.tar.gz DIR

It needs the device package's dependencies only (numpy, plus ONNX Runtime or TensorRT with cuda-python)
and runs on Python 3.8. ``attn-export verify`` / ``build`` / ``predict`` on the host run the same code with
the host's additions. Errors are one ``Error: ...`` line on stderr with DESIGN's exit code (2 bad usage or
input, 1 the work failed, 3 not possible on this machine).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, NoReturn, Optional, Sequence, Tuple, Union

from ..errors import (AttnExportError, BadInput, Interrupted, ParityError, does_nothing, empty_path, given_twice,
                      printable, unexpected)
from .dispatch import DEPLOYMENT
from .interrupt import interruptible, message
from .limits import DEFAULT_BATCH
from .precisions import ENGINE_PRECISIONS, ONNX_FILES, engine_precision
from .store.files import json_text
from .trt.readiness import TARGETS as TENSORRT_TARGETS

__all__ = ["main", "prediction_rows"]

COMMANDS = ("verify", "predict", "build", "info", "unpack")


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # an abbreviated option is refused, as on the host (found by attacking: --prec ran FP16 here, the host
        # said "No such option")
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # one line, DESIGN's exit code for bad usage
        self.exit(2, f"Error: {printable(message)}; see {self.prog} --help\n")


class _Once(argparse.Action):
    """An option of one value: a second one is refused (``errors.given_twice``), not kept over the first."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        seen = namespace.__dict__.setdefault("_given", {})
        seen.setdefault(self.dest, []).append(str(values))
        if len(seen[self.dest]) > 1:
            parser.exit(2, f"Error: {printable(str(given_twice(self.option_strings[-1], seen[self.dest])))}\n")
        setattr(namespace, self.dest, values)


def _path(expected: str) -> Callable[[str], Path]:
    """A path argument as given; "" is refused (``errors.empty_path``), not read as the current directory."""
    def convert(value: str) -> Path:
        problem = empty_path(value, expected)
        if problem is not None:
            raise argparse.ArgumentTypeError(str(problem))
        return Path(value)

    return convert


_directory = _path("an artefact directory or a bundle .tar.gz")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m attn_export.runtime",
                     description="Check, build and run a deployed attn-export model (torch-free).",
                     epilog="--debug, anywhere on the line: show the traceback of an error before its one line.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    verify = sub.add_parser("verify", help="check every artefact in DIR against reference.npz; record the verdict")
    verify.add_argument("directory", metavar="DIR", type=_directory)
    verify.add_argument("--backends", action=_Once, default="auto", metavar="NAMES",
                        help="auto (every backend; unavailable ones listed as skipped) or a comma-separated list")
    verify.add_argument("--set", dest="overrides", action="append", default=[], metavar="verify.KEY=VALUE",
                        help="change a tolerance of the recorded [verify] table for this run (repeatable)")
    verify.add_argument("--threads", action=_Once, type=int, default=1, metavar="N", help="CPU threads per backend")
    verify.add_argument("--json", action="store_true", help="print the result as JSON on stdout")

    predict = sub.add_parser("predict", help="predict a label per sequence of INPUT (.npz, .ts, .csv)")
    predict.add_argument("directory", metavar="DIR", type=_directory, help="artefact directory or bundle .tar.gz")
    predict.add_argument("input", metavar="INPUT", help=".npz, .ts or .csv file (or a directory of .csv)")
    # None when not given: a CPU bundle's recommended pair is then named beside what ran
    predict.add_argument("--backend", action=_Once, default=None, metavar="NAME",
                         help=f"auto (best for this device; the default) or {DEPLOYMENT}")
    predict.add_argument("--precision", action=_Once, default=None, choices=list(ONNX_FILES), help="default fp32")
    # None when not given: with --stream, which reads neither, a given one is refused (predict_request)
    predict.add_argument("--on-long", action=_Once, default=None, choices=["error", "truncate", "split"],
                         help="default error")
    predict.add_argument("--batch-size", action=_Once, type=int, default=None, metavar="N",
                         help=f"default {DEFAULT_BATCH}")
    predict.add_argument("--allow-unverified", action="store_true")
    predict.add_argument("--attention", action="store_true", help="include attention weights in --json")
    predict.add_argument("--stream", action=_Once, type=int, default=None, metavar="CHUNK",
                         help="feed each sequence to model.stream.onnx CHUNK steps at a time; print the running "
                              "prediction after each chunk")
    predict.add_argument("--threads", action=_Once, type=int, default=None, metavar="N",
                         help="CPU threads for the backend (0 or none: the runtime's own; ONNX Runtime takes every "
                              "core); bench times at 1")
    predict.add_argument("--json", action="store_true", help="print JSON on stdout")

    build = sub.add_parser("build", help="build a TensorRT engine for this GPU from DIR's ONNX")
    build.add_argument("directory", metavar="DIR", type=_directory)
    precision = build.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="from model.fp16.onnx")
    precision.add_argument("--int8", action="store_true", help="from model.int8-qdq.onnx")
    build.add_argument("--stream", action="store_true", help="from the stream graph of the precision "
                       "(model.stream.onnx, ...); --min-seq/--opt-seq/--max-seq then set its chunk range")
    for flag in ("--max-batch", "--min-seq", "--opt-seq", "--max-seq", "--workspace"):
        build.add_argument(flag, action=_Once, type=int, default=0, metavar="N")
    build.add_argument("--target", action=_Once, metavar="T", choices=list(TENSORRT_TARGETS),
                       help="the TensorRT line this machine is (jetpack5, ...): refused when the bundle was made for "
                            "another; without it, the installed TensorRT is checked against the bundle's")
    build.add_argument("--json", action="store_true")

    info = sub.add_parser("info", help="what DIR (or a bundle) holds and what this machine can run")
    info.add_argument("directory", metavar="DIR", type=_directory, help="artefact directory or bundle .tar.gz")
    info.add_argument("--target", metavar="T", action="append", choices=list(TENSORRT_TARGETS),
                      help="check every ONNX file against this TensorRT line's parser (repeatable; default: the "
                           "bundle's own target, none for a directory)")
    info.add_argument("--json", action="store_true")

    unpack = sub.add_parser("unpack", help="unpack a bundle into DIR (new or empty), each file checked against "
                                           "bundle.json before anything is written; what attn-export unbundle does")
    unpack.add_argument("archive", metavar="BUNDLE", type=_path("a bundle .tar.gz"),
                        help="a .tar.gz made by attn-export bundle")
    unpack.add_argument("target", metavar="DIR", type=_path("a new or empty directory to unpack into"),
                        help="a new directory (made with its parents) or an empty one")
    return parser


def prediction_rows(ids: Sequence[str], predictions: Sequence[Any], labels: Optional[Sequence[str]],
                    attention: bool, head: str) -> List[Dict[str, Any]]:
    """One JSON row per prediction, as both command lines print them: a classifier's label and
    probabilities; any other model's output under its own name (``prediction``, ``context``)."""
    rows = []
    for k, (name, p) in enumerate(zip(ids, predictions)):
        row: Dict[str, Any] = {"id": name}
        if head == "logits":
            row.update(label=p.label, index=p.index, probability=float(p.probabilities.max()),
                       probabilities=[float(v) for v in p.probabilities])
        else:
            row[head] = [float(v) for v in p.probabilities]
        if labels is not None:  # a regression target as the number it is (found by a user: "0.7139", a string)
            row["true"] = _target(labels[k]) if head != "logits" else labels[k]
        if attention:
            row["attention"] = [float(v) for v in p.attention]
        rows.append(row)
    return rows


def _target(text: str) -> Any:
    """A true value beside a model without classes: a finite number where it is one, else the text."""
    from .readers import strict_float

    try:
        value = strict_float(text.strip())  # ASCII digits only: not '1_000' or another script's digits
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def about(predictor: Any) -> Dict[str, Any]:
    """What ran, for ``predict --json`` on both command lines: the file, the backend, the precision, notes."""
    return {"artifact": predictor.artifact.name, "backend": predictor.backend_name, "precision": predictor.computes,
            "notes": predictor.notes}


STREAM_UNREAD = ("--on-long", "--batch-size")  # predict's options a stream does not read


def predict_request(directory: Union[str, Path], store: Any, chunk: Optional[int], attention: bool, as_json: bool,
                    given: Sequence[str] = ()) -> None:
    """Refuse what ``predict`` was asked before any model is loaded: ``--attention`` without ``--json`` (the
    table has no place for it: it was ignored), and for ``--stream CHUNK`` a chunk out of range,
    ``--attention``, the options of ``given`` (those the command line gave) that a stream does not read,
    or a model that cannot stream (the first thing to say, before a missing graph's "run export"); ``store``:
    ``directory``'s, open."""
    from .streaming import MAX_CHUNK, not_streamable

    if attention and chunk is not None:  # first: --json would not help (found by attacking: it advised --json)
        raise BadInput("--attention with --stream: the stream graph gives no attention weights (each step's weight "
                       "changes with every later step); expected one of the two")
    if attention and not as_json:
        raise BadInput("--attention adds the attention weights to --json's document; expected --json --attention")
    if chunk is None:
        return
    unread = [flag for flag in given if flag in STREAM_UNREAD]
    if unread:  # found by attacking: both were ignored, exit 0
        raise does_nothing(unread, "with --stream (one stream of batch 1, fed chunks of any length)",
                           f"{'them' if len(unread) > 1 else 'it'} without --stream")
    if not 1 <= chunk <= MAX_CHUNK:
        raise BadInput(f"--stream {chunk}: expected a chunk of 1 to {MAX_CHUNK:,} steps")
    reason = not_streamable(store.info.recipe.get("model", {}))
    if reason is not None:
        raise BadInput(f"{directory}: its model cannot stream exactly: {reason}")


def open_predictor(directory: Union[str, Path], input_path: Union[str, Path], chunk: Optional[int],
                   attention: bool, as_json: bool, given: Sequence[str], **load: Any) -> Tuple[Any, Any]:
    """``predict``'s start on both command lines: the store opened once (a bundle is read whole: found by
    review, it was read twice), the input read by the gap policy its model.json records (an unreadable one
    said first), the request checked, and the predictor loaded with ``load`` (``Predictor.load``'s
    arguments), which closes the store on any way out; with the note on the gaps filled."""
    from .inputs import filled_note, read_input
    from .predictor import Predictor
    from .store import Store

    store = Store.load(directory)
    try:
        data = read_input(input_path, store.info.missing)  # gaps filled as the training data's were
        predict_request(directory, store, chunk, attention, as_json, given)
    except BaseException:
        store.close()
        raise
    predictor = Predictor.load(store, **load)
    if data.filled:
        predictor.notes.append(filled_note(data, predictor.missing, chunk is not None))
    return predictor, data


def stream_document(predictor: Any, ids: Sequence[str], sequences: Sequence[Any], chunk: int,
                    labels: Optional[Sequence[str]] = None, attention: bool = False) -> Dict[str, Any]:
    """``predict --stream CHUNK``: each sequence fed to the stream graph ``chunk`` steps at a time (one
    stream, reset between sequences); ``updates`` has one row per update: the id, the chunk's number, the
    steps seen and the prediction for that prefix (``prediction_rows``' fields, ``true`` with ``labels``);
    ``count``, ``accuracy`` and ``correct`` judge each sequence's last update, as ``predict`` judges its
    answer; the rest says what ran (``about``, with the stream graph or engine as the artefact)."""
    from .inputs import accuracy
    from .streaming import chunked

    stream = predictor.stream(batch=1)
    rows: List[Dict[str, Any]] = []
    finals: List[Any] = []
    for k, (name, seq) in enumerate(zip(ids, sequences)):
        stream.reset()
        true = None if labels is None else [labels[k]]
        for n, (piece, valid) in enumerate(chunked(seq, chunk)):
            prediction = stream.push(piece[None], lengths=[valid])[0]
            row = prediction_rows([name], [prediction], true, False, predictor.head)[0]
            rows.append({"id": name, "chunk": n + 1, "steps": int(stream.steps[0]),
                         **{key: value for key, value in row.items() if key != "id"}})
        finals.append(prediction)
    acc, correct = (accuracy([p.label for p in finals], labels) if labels is not None and predictor.head == "logits"
                    else (None, None))
    # the predictor's notes, the whole-sequence graph's left for the stream graph's (found by attacking: a never
    # verified stream graph, loaded with --allow-unverified, had no note, and model.onnx's was said); after the
    # pushes, which may add one (review)
    notes = [n for n in predictor.notes if n not in predictor.graph_notes] + stream.notes
    return {**about(predictor), "artifact": stream.backend.artifact.name, "notes": notes, "stream": chunk,
            "count": len(finals),
            "accuracy": acc, "correct": correct, "updates": rows}


def stream_table(rows: Sequence[Dict[str, Any]], head: str) -> List[str]:
    """``stream_document``'s updates as tab-separated lines under a header."""
    fields = ["label", "probability"] if head == "logits" else [head]
    lines = ["\t".join(["id", "chunk", "steps", *fields])]
    for row in rows:
        values = [row[f] if f != "probability" else f"{row[f]:.4f}" for f in fields]
        values = [" ".join(f"{v:.4g}" for v in value) if isinstance(value, list) else str(value) for value in values]
        lines.append("\t".join(tsv_cell(str(c)) for c in [row["id"], row["chunk"], row["steps"], *values]))
    return lines


def tsv_cell(text: str) -> str:
    """``text`` as one TSV cell: ``printable`` after doubling each backslash, so an id holding a tab and one
    holding the text '\\t' stay two (found by attacking: both were written 'a\\tb')."""
    return printable(text.replace("\\", "\\\\"))


def prediction_table(ids: Sequence[str], predictions: Sequence[Any], head: str) -> List[str]:
    """Predictions as tab-separated lines under a header row, which a person, pandas or a spreadsheet can read
    (none for no prediction)."""
    if not predictions:
        return []
    width = len(shown(predictions[0], head, limit=None))
    lines = ["\t".join(["id", "label", "probability"] if head == "logits"
                       else ["id", *(f"{head}_{j}" for j in range(width))])]
    # labels and ids are data: tsv_cell() keeps a tab or newline in one from making a row of its own
    return lines + ["\t".join(tsv_cell(c) for c in [i, *shown(p, head, limit=None)]) for i, p in zip(ids, predictions)]


def shown(prediction: Any, head: str, limit: Optional[int] = 6) -> List[str]:
    """A prediction as text cells: a classifier's (label, probability); any other model's output values,
    one cell each (``limit`` None), or one cell with the first ``limit`` and how many there are."""
    if head == "logits":
        return [prediction.label, f"{float(prediction.probabilities.max()):.4f}"]
    values = [f"{float(v):.4g}" for v in prediction.probabilities]
    if limit is None:
        return values
    return [" ".join(values[:limit]) + (f" ... ({len(values)} values)" if len(values) > limit else "")]


def _unpack(args: argparse.Namespace) -> int:
    from .bundle import unpack

    print(f"unpacked {args.archive} -> {unpack(args.archive, args.target)}", file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from .trt.readiness import summary_lines
    from .verify import verify

    result = verify(args.directory, args.backends, args.threads or None, overrides=args.overrides)
    if args.json:
        print(json_text(result.to_dict()))
    else:
        for row in result.ran():
            what = row.reason if row.status != "passed" else (
                f"worst {row.worst_ratio:.2f} of its budget" if row.worst_ratio is not None else "")
            print(f"{row.status:8} {row.target.backend:14} {row.target.artifact or '-':22} {what}{row.carried_text()}",
                  file=sys.stderr)
        for line in result.skipped_lines():
            print(f"skipped  {line}", file=sys.stderr)
        for reason in result.untrusted:
            print(f"not current: {reason}", file=sys.stderr)
        for line in result.not_carried:
            print(line, file=sys.stderr)
        for line in summary_lines(result.tensorrt):
            print(line, file=sys.stderr)
        loosened = f" with {result.loosened}" if result.loosened else ""
        print(f"verify {args.directory}: {'PASSED' if result.passed else 'FAILED'}{loosened} (verify.json, verdicts in "
              "manifest.json)", file=sys.stderr)
    if not result.passed:
        raise ParityError("verification failed: " + " | ".join(result.failures()))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .inputs import accuracy, check_features, check_labels, check_width, unused_truth

    predictor, data = open_predictor(
        args.directory, args.input, args.stream, args.attention, args.json,
        [flag for flag, value in (("--on-long", args.on_long), ("--batch-size", args.batch_size)) if value is not None],
        backend=args.backend or "auto", precision=args.precision or "fp32", allow_unverified=args.allow_unverified,
        threads=args.threads or None, batch_size=DEFAULT_BATCH if args.batch_size is None else args.batch_size)
    with predictor:
        if args.backend is None and args.precision is None and (unasked := predictor.unasked()):
            predictor.notes.append(unasked)
        if (unused := unused_truth(data, predictor.head, args.input)) is not None:
            predictor.notes.append(unused)
        # named columns first: an extra or missing one is named, not counted (found by attacking)
        check_features(data.features, predictor.feature_names, args.input, data.first_rows)
        check_width(data.sequences, predictor.features, args.input)
        if predictor.head == "logits":
            check_labels(data.labels, predictor.labels, args.input)
        # a stream runs its own graph, verified on other lengths (found by review); after the checks, which
        # name the input file (the note checks the sequences too)
        beyond = predictor.beyond_judged if args.stream is None else predictor.beyond_streamed
        if (note := beyond(data.sequences)) is not None:
            predictor.notes.append(note)
        if args.stream is not None:
            document = stream_document(predictor, data.ids, data.sequences, args.stream, data.labels, args.attention)
            print(json_text(document) if args.json else "\n".join(stream_table(document["updates"],
                                                                                          predictor.head)))
            for note in [] if args.json else document["notes"]:
                print(f"note: {note}", file=sys.stderr)
            if document["accuracy"] is not None and not args.json:
                print(f"accuracy {document['accuracy']:.4f} ({document['correct']}/{document['count']}, each "
                      "sequence's last update)", file=sys.stderr)
            return 0
        for note in [] if args.json else predictor.notes:
            print(f"note: {note}", file=sys.stderr)
        predictions = predictor.predict(data.sequences, on_long=args.on_long or "error")
        head, ran = predictor.head, about(predictor)
    acc = accuracy([p.label for p in predictions], data.labels) if data.labels is not None and head == "logits" \
        else None
    if args.json:
        print(json_text({**ran, "count": len(predictions), "accuracy": None if acc is None else acc[0],
                          "correct": None if acc is None else acc[1],
                          "predictions": prediction_rows(data.ids, predictions, data.labels, args.attention, head)}))
    else:
        for line in prediction_table(data.ids, predictions, head):
            print(line)
        if acc is not None:
            print(f"accuracy {acc[0]:.4f} ({acc[1]}/{len(predictions)})", file=sys.stderr)
    return 0


def _build(args: argparse.Namespace) -> int:
    from .trt.build import BuildOptions, build_engine, preflight

    precision = engine_precision({"--fp16": args.fp16, "--int8": args.int8})
    options = BuildOptions(precision=precision, max_batch=args.max_batch, min_seq=args.min_seq,
                           opt_seq=args.opt_seq, max_seq=args.max_seq, workspace_mib=args.workspace,
                           target=args.target, stream=args.stream)
    options.check()  # bad flags: exit 2 on any machine
    preflight(0, args.directory, args.target)  # another target's bundle, no GPU, no TensorRT: before any write
    result = build_engine(args.directory, options, say=lambda s: print(s, file=sys.stderr))
    if args.json:
        print(json_text(result.to_dict()))
    else:
        print(f"wrote {args.directory / result.engine}", file=sys.stderr)
    return 0


def _info(args: argparse.Namespace) -> int:
    from .backends import status
    from .bundle import not_verified, recommendation
    from .inputs import gap_words, named_classes, named_features
    from .recommend import predict_flags, why_picked
    from .settings import not_default
    from .store import DIRECTORY_FILES, LOCK, MANIFEST, STREAM_FILES, Store, is_engine
    from .store.trust import NEVER_JUDGED, NEVER_VERIFIED
    from .trt.readiness import graphs_of, not_current, readiness, render

    with Store.load(args.directory) as store:  # a directory or a bundle, read in place
        info = store.info
        files: Dict[str, Dict[str, Any]] = {}
        # a recorded file that is gone is listed as what the store finds (found by attacking: it had no line);
        # with the manifest itself gone, it and every file attn-export names that is here (found by attacking:
        # info listed nothing, where predict and verify refused every file)
        here = sorted(os.listdir(store.directory)) if store.directory.is_dir() and not store.packed else []
        named = [n for n in DIRECTORY_FILES if n not in (MANIFEST, LOCK) and n in here] + [
            n for n in here if is_engine(n) and os.path.isfile(store.directory / n)
            and not os.path.islink(store.directory / n)]
        names = store.present() + store.lacking()
        if store.read(MANIFEST) is None:
            names = [MANIFEST] + named
        else:  # a file attn-export names that the manifest does not record, which verify refuses (found by attacking)
            names += [n for n in named if n not in names and store.entry(n) is None and n.endswith((".onnx", ".engine"))]
        for name in names:
            trust = store.state(name)
            verifiable = name in ONNX_FILES.values() or name in STREAM_FILES.values() or is_engine(name)
            files[name] = {"state": trust.state, "problems": trust.problems(), "verifiable": verifiable,
                           "verified": trust.verified, "verdict": trust.verdict, "loosened": store.loosened(name)}
        made = store.made_for()
        pick = recommendation(store)
        refused = not_verified(store, pick) if pick else None
        lines = args.target or ([made] if made else [])
        tensorrt = readiness(graphs_of(store), lines, not_current(store)) if lines else {}
    backends = status()
    settings = not_default(info.verify)
    out = {"directory": str(args.directory), "inputs": info.input_size, "outputs": info.num_outputs,
           "head": info.head, "labels": list(info.labels),
           "feature_names": None if info.feature_names is None else list(info.feature_names), "missing": info.missing,
           "artifacts": files, "backends": backends,
           "engines_buildable": list(ENGINE_PRECISIONS), "made_for": made, "tensorrt": tensorrt, "recommended": pick,
           "recipe_settings": settings}
    if args.json:
        print(json_text(out))
        return 0
    print(f"{args.directory}: {info.input_size} features -> {info.num_outputs} {info.head} outputs")
    print(f"  features  {named_features(info.feature_names)}; a gap is {gap_words(info.missing, info.imported)}")
    if info.labels:
        print("  classes   " + named_classes(info.labels, info.head == "binary"))
    for name, state in files.items():
        # a verdict other than these is among the problems already (found by review: said twice)
        never = {NEVER_VERIFIED: ", never verified", NEVER_JUDGED: f", {NEVER_JUDGED}"}.get(state["verdict"], "")
        verdict = {True: ", verified", False: ", FAILED verify", None: never}[state["verified"]] + (
            f" with --set {', '.join(state['loosened'])}" if state["loosened"] else "")
        shown = state["verifiable"] and state["state"] == "current"  # a verdict on stale bytes says nothing
        print(f"  {name:32} {'; '.join(state['problems']) or 'ok'}{verdict if shown else ''}")
    if settings:  # the verdicts above were given under them (found by review)
        print(f"  verdicts under the recipe's [verify] {', '.join(settings)}")
    for name, reason in backends.items():
        print(f"  backend {name:14} {'available' if reason is None else reason}")
    if pick:  # found by attacking: predict runs FP32 unless told, and nothing here said what to tell it
        print(f"recommended: predict {predict_flags(pick)} ({pick['artifact']}, {why_picked(pick)})"
              + (f"; {refused}" if refused else ""))
    if tensorrt:
        print(("made for " + str(made) + "; " if made else "") + "TensorRT readiness:")
        print(render(tensorrt))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # --debug anywhere on the line, as on the host: the traceback before the one line (found by attacking: the
    # device refused it, and had no other way to show one)
    debug = "--debug" in args_list
    args_list = [a for a in args_list if a != "--debug"]
    if args_list and args_list[0] not in COMMANDS and not args_list[0].startswith("-"):
        if not Path(args_list[0]).exists():  # neither a command nor the old form's DIR: a typo, said as one
            import difflib

            close = difflib.get_close_matches(args_list[0], COMMANDS, n=1)
            print(f"Error: unknown command {printable(args_list[0], 40)!r}"
                  + (f" (did you mean {close[0]}?)" if close else "") + f"; expected one of {', '.join(COMMANDS)}, "
                  "or the old form DIR INPUT", file=sys.stderr)
            return 2
        args_list.insert(0, "predict")  # the form bundles made before 0.1.0 document: DIR INPUT
    args = _parser().parse_args(args_list)
    run = {"verify": _verify, "predict": _predict, "build": _build, "info": _info, "unpack": _unpack}[args.command]
    try:
        with interruptible():
            return run(args)
    except Interrupted as e:
        _traceback(debug)
        print(f"Error: {message(e)}", file=sys.stderr)
        return e.exit_code
    except AttnExportError as e:
        _traceback(debug)
        print(f"Error: {printable(str(e))}", file=sys.stderr)  # a file's name or label is data, never a command
        return e.exit_code
    except BrokenPipeError:  # the reader went away (| head): not an error of ours
        sys.stderr.close()
        return 0
    except (MemoryError, ImportError, OSError, RuntimeError) as e:  # memory, or a file system error: one line
        error = unexpected(e)
        if error is None:
            raise
        _traceback(debug)
        print(f"Error: {printable(str(error))}", file=sys.stderr)
        return error.exit_code


def _traceback(debug: bool) -> None:
    if debug:
        import traceback

        traceback.print_exc()

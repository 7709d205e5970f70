"""``attn-export verify``: parity and latency of every backend × artefact against PyTorch FP32."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..backends import REGISTRY
from ..errors import ParityError
from ..runtime.store import Store
from ..runtime.timing import ms_text
from ..runtime.verify import VerifyResult
from .common import DirArg, Grid, JsonOpt, console, print_json, progress_bar

NAME = "verify"

BackendsOpt = Annotated[str, typer.Option(
    "--backends", metavar="NAMES", help="'auto' (every backend; unavailable ones are listed as skipped) or a comma-separated "
                       f"list of {', '.join(REGISTRY)} (an unavailable one is an error, exit 3).")]
ThreadsOpt = Annotated[int, typer.Option(
    "--threads", min=0, help="CPU threads per backend (0: the library's default). Recorded in the results.")]


VerifySetOpt = Annotated[list[str] | None, typer.Option(
    "--set", metavar="verify.KEY=VALUE", help="Change a tolerance of the recipe's [verify] table for this run "
                                              "(repeatable); other sections are the recipe's, fixed at train.")]


def command(
    directory: DirArg = Path("artifacts"),
    backends: BackendsOpt = "auto",
    json_out: JsonOpt = False,
    report: Annotated[bool, typer.Option("--report", help="Also write DIR/report.md with plots and heatmaps.")] = False,
    threads: ThreadsOpt = 1,
    overrides: VerifySetOpt = None,
) -> None:
    """Run the same inputs through every backend and artefact; compare with PyTorch FP32; write verify.json.

    --set verify.key=value changes a tolerance of the recipe's [verify] table for this run (recorded in
    verify.json and in each artefact's verdict). A run on some backends keeps the earlier results of the
    others (marked carried) while their files, the reference and the settings are unchanged."""
    result = run_verify(directory, backends, threads or None, quiet=json_out, report=report,
                        overrides=overrides or [])
    if json_out:
        print_json(result.to_dict())
    raise_if_failed(result)


def run_verify(directory: Path, backends: str, threads: int | None, quiet: bool = False,
               report: bool = False, overrides: list[str] | None = None) -> VerifyResult:
    from ..verify import verify

    out = console(stderr=True)
    with progress_bar("verify", quiet) as progress:
        result = verify(directory, backends, threads, progress=progress, overrides=overrides or [])
    if not quiet:
        out.print(table(result, directory))
    if report:
        from ..report import write_report

        path = write_report(directory)
        if not quiet:
            out.print(f"report: {path}")
    return result


def table(result: VerifyResult, directory: Path) -> Any:
    """The targets that ran, failures first; then one line per skipped backend, its reason whole."""
    from rich.console import Group
    from rich.text import Text

    from ..runtime.trt.readiness import summary_lines

    def fmt(v: float | None, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    title = Text.assemble(f"verify {directory}: ", ("PASSED", "green") if result.passed else ("FAILED", "red"),
                          (f" with {result.loosened}", "yellow") if result.loosened else "",
                          f" against {result.reference['backend']} FP32 ({result.reference['source']}, test accuracy "
                          f"{fmt(result.reference['accuracy'], '.4f')})",
                          f"; p50 at {result.latency_at()}" if result.latency_at() else "")
    # a table where every number fits on its line, else one line per target (a narrow terminal had folded
    # numbers across lines: found by attacking); each reason whole, under it
    numbers = ["cases", "max abs", "of budget", "accuracy", "Δ acc", "agree", "p50 ms"]
    t = Grid(title, ["backend", "artefact", "precision", "status", *numbers], key=2, right=tuple(numbers))
    for r in result.ran():
        t.add_row(r.target.backend, r.target.artifact or "-", r.target.precision or "-",
                  Text.assemble((r.status, "green" if r.status == "passed" else "red"),
                                " (carried)" if r.carried_from else ""),
                  str(len(r.cases)), fmt(r.worst_max_abs, ".1e"), fmt(r.worst_ratio, ".2f"), fmt(r.accuracy, ".4f"),
                  fmt(r.accuracy_delta, "+.4f"), fmt(r.argmax_agreement, ".4f"),
                  ms_text(r.latency_ms["p50"] if r.latency_ms else None))
    reasons = [Text.assemble((f"{r.status} ", "green" if r.status == "passed" else "red"), f"{r.target.label}: ",
                             r.reason) for r in result.ran() if r.reason]
    # a row judged on the test split's decisions whose sweep moved some (its max abs may be from such a
    # case): said, since the table's agreement is the test split's (found by attacking)
    moved = [Text.assemble(("not judged ", "yellow"), line) for line in result.unjudged_decisions()]
    # a runtime that cannot read a file has no row above: said where the report's conformance table says it
    unread = [Text.assemble(("cannot read ", "yellow"), f"{c.runtime} {c.artifact}: {c.detail}")
              for c in result.conformance if c.status == "cannot read"]
    skipped = [Text.assemble(("skipped ", "yellow"), line) for line in result.skipped_lines()]
    untrusted = [Text.assemble(("not current ", "red"), reason) for reason in result.untrusted]
    readiness = [Text(line) for line in summary_lines(result.tensorrt)]
    # why "test accuracy -" (found by a user: it was only in verify.json)
    split = ([Text.assemble(("no test accuracy: ", "yellow"), str(result.reference.get("test_split")))]
             if result.reference.get("accuracy") is None and result.reference.get("test_split") else [])
    # a PASSED of a model below its recipe's floor said nothing of it here, only in the report (found by attacking)
    below = Store(directory).below_floor()
    floor = [Text.assemble(("BELOW THE RECIPE'S ACCURACY FLOOR: ", "red"), below)] if below else []
    return Group(t, *reasons, *moved, *unread, *floor, *split, *skipped, *untrusted,
                 *[Text(line) for line in carried_lines(result)], *readiness)


def carried_lines(result: VerifyResult) -> list[str]:
    """What this verify.json holds that this run did not measure (rows carried over from an earlier verify
    on the same bytes: passes with the same reference and settings, failures whatever they were), and each
    earlier result it dropped, with the reason."""
    lines: list[str] = []
    for when, rows in result.carried_by_run().items():
        passes = [r.target.label for r in rows if r.status == "passed"]
        failures = [r.target.label for r in rows if r.status != "passed"]
        lines += [f"carried (not re-run now; same bytes, reference and settings) from the verify of {when}: "
                  f"{', '.join(passes)}"] if passes else []
        lines += [f"carried failures (not re-run now; same bytes, whatever the settings: a failure stands until its "
                  f"backend runs the file again) from the verify of {when}: {', '.join(failures)}"] if failures else []
    return lines + list(result.not_carried)


def raise_if_failed(result: VerifyResult) -> None:
    failed = result.failures()
    if failed:
        shown = " | ".join(failed[:3]) + (f" | and {len(failed) - 3} more" if len(failed) > 3 else "")
        raise ParityError(f"verification failed for {len(failed)} target(s): {shown} (details in verify.json)")

"""``report.md``: the proof a user shows their team, rendered from verify.json and bench.json (data first).

Sections: the verdict and the verify table, accuracy per precision, attention heatmaps of a few test
sequences from every backend (``attention.png``: the rows of one sequence should look alike), and the
bench plots with their ratios. Each section is written from the JSON, so the report can be rebuilt from
the files without re-running anything; but it states only what the manifest and the current bytes support
(the store's answer): a verify.json no verdict was recorded from, an artefact changed or stale since it
was verified or timed, metrics of weights that were retrained since, are shown as such, never as passed.
A row verify carried over from an earlier run (``carried_from``: not re-run by the latest verify) is
marked *(carried)*, with the run that measured it; the earlier results it dropped are listed with the reason.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from .backends import REGISTRY
from .errors import AttnExportError, MissingPrerequisite, printable, shell_word
from .runtime import schema, store
from .runtime.bundle import artifact_names
from .runtime.iospec import CLASSIFIERS
from .runtime.store import Store
from .runtime.timing import duration_text, fit_caveat, ms_text
from .runtime.verify import CUT_MARGIN_SHARE, ONE_BY_ONE, VERIFY_JSON, ConformanceCell, VerifyResult, tolerance_key

__all__ = ["ATTENTION_PNG", "REPORT_MD", "write_report"]

REPORT_MD, ATTENTION_PNG = store.REPORT_MD, store.ATTENTION_PNG


def _cell(text: str | None) -> str:
    """Free text in a Markdown table cell: ``|`` escaped (``|ref|`` stays ``|ref|``), on one line (a bare
    carriage return is a line break to Markdown too: found by attacking)."""
    return (text or "").replace("|", "\\|").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def _label(text: str) -> str:
    """A class label in Markdown text: every character that could open markup (a code span, a link, emphasis,
    a heading) escaped, on one line (found by attacking: a label of backticks and a link rendered a live link,
    and a label with carriage returns a heading)."""
    one_line = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return re.sub(r"([\\`*_{}\[\]()#+\-.!<>|~])", r"\\\1", one_line)


def _no_html(line: str) -> str:
    """``line`` with each ``<`` that could open an HTML tag or comment (before a letter, ``/``, ``!`` or ``?``)
    written ``&lt;``: text from a directory's name or its JSON files (labels, reasons, hand-edited) never
    renders as HTML (found by attacking: ``<script>`` did); ``seq <= 4096`` reads as it is. In code spans too:
    a stray backtick in such text ends one where Markdown does not (found by review), so a command naming a
    directory ``a<b`` shows ``a&lt;b`` there, the price of never guessing."""
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", line)


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


CARRIED = "(carried)"  # a row the latest verify did not re-run: carried over from an earlier verify.json
STALE = "(NOT CURRENT)"  # a result on a file that is no longer the bytes it measured (the verify table says why)


def _carried_note(result: VerifyResult) -> list[str]:
    """Which rows were carried over from which earlier verify (``verify.json`` ``carried_from``)."""
    runs = result.carried_by_run()
    if not runs:
        return []
    return ["", f"*{CARRIED}*: not re-run by the verify of {result.created}; carried over from an earlier verify "
                "of the same bytes, a pass with the same reference and settings, a failure whatever they were (it "
                "stands until its backend runs the file again; `carried_from` in `verify.json`):", ""] + [
        f"- from the verify of {when}: {', '.join(f'{r.target.backend} `{r.target.artifact}`' for r in rows)}"
        for when, rows in runs.items()]


def _per_cpu_note(result: VerifyResult) -> list[str]:
    """The CPU each row of a backend whose arithmetic is the CPU's was judged on: its pass holds there only
    (``recommend.judged_elsewhere``)."""
    from .runtime.recommend import cpu_text, this_cpu

    rows = [r for r in result.ran() if r.target.backend in REGISTRY and REGISTRY[r.target.backend].per_cpu]
    return ["", "Judged on one CPU (the backend computes as the CPU it runs on does; its pass holds on that CPU "
                "only):", ""] + [f"- {r.target.backend} `{r.target.artifact}`: "
                                 + (cpu_text(*r.cpu) + ("" if this_cpu(*r.cpu) else " (not this CPU)") if r.cpu
                                    else "no CPU recorded (an older attn-export)")
                                 for r in rows] if rows else []


def _verify_table(result: VerifyResult, stale: set[str]) -> list[str]:
    p50_at = result.p50_header()
    lines = ["| backend | artefact | precision | status | cases | worst max abs (head output) | worst of budget | accuracy "
             f"| Δ accuracy | argmax agreement | {p50_at} | reason |", "|" + "---|" * 12]
    for r in result.ran():
        p50 = r.latency_ms["p50"] if r.latency_ms else None
        reason = _cell(r.reason)
        lines.append(f"| {r.target.backend} | {r.target.artifact or '–'} | {r.target.precision or '–'} | "
                     f"**{r.status}**{' (NOT CURRENT)' if r.target.artifact in stale else ''}"
                     f"{' ' + CARRIED if r.carried_from else ''} | {len(r.cases)} | "
                     f"{_fmt(r.worst_max_abs, '.2e')} | {_fmt(r.worst_ratio, '.2f')} | "
                     f"{_fmt(r.accuracy, '.4f')} | {_fmt(r.accuracy_delta, '+.4f')} | "
                     f"{_fmt(r.argmax_agreement, '.4f')} | {ms_text(p50)} | {reason} |")
    lines += _carried_note(result) + _per_cpu_note(result)
    # found by attacking: a row said "passed" where its backend had run part of the sweep (a slow interpreter's size
    # limit, an engine's profile): which cases, said only in verify.json
    not_run: dict[tuple[str, ...], list[str]] = {}
    for r in result.ran():
        if r.cases_not_run:
            not_run.setdefault(tuple(r.cases_not_run), []).append(f"{r.target.backend} `{r.target.artifact}`")
    if not_run:
        lines += ["", "Cases not run (each row above was judged on the others):", ""] + [
            f"- {', '.join(rows)}: {_cell('; '.join(cases))}" for cases, rows in not_run.items()]
    cut = [r for r in result.ran() if r.cut]
    if cut:
        lines += ["", "INT8 on the test split cut short (its sequences cut to fewer steps than any it holds): decisions "
                  "moved from PyTorch FP32's, and of those its own: also unlike the file made again here by quantize's "
                  f"recipe, where FP32's margin exceeds {CUT_MARGIN_SHARE:g} x its median on the split (any fails):", ""] + [
            f"- {r.target.backend} `{r.target.artifact}`: {r.cut['moved']} of {r.cut['rows']} moved, {r.cut['own']} "
            f"its own (cut to {', '.join(map(str, r.cut['steps']))} step(s))" for r in cut]
    skipped = result.skipped_by_backend()
    if skipped:
        lines += ["", "Skipped:", ""] + [f"- {backend}{' (' + ', '.join(f'`{n}`' for n in names) + ')' if names else ''}: "
                                         f"{reason}" for backend, names, reason in skipped]
    return lines


def _tensorrt_readiness(s: Store, result: VerifyResult) -> list[str]:
    """Each ONNX file against each TensorRT target's parser rules that verify checked, checked again on the
    files as they are now: a static check (``attn-export inspect DIR --target T`` names every finding), not a
    build. A file that is not current says what the store finds, as verify and inspect say it (found by
    attacking: after a retrain, a re-export at another opset or a deletion, the report repeated verify's
    "ready" for bytes verify never read)."""
    from .runtime.trt.readiness import TARGETS, graphs_of, not_current, readiness, summary

    if not result.tensorrt:
        return []
    targets = [t for t in result.tensorrt if t in TARGETS]
    recorded = summary(readiness(graphs_of(s), targets, not_current(s)))
    files = list(dict.fromkeys(f for t in targets for f in recorded[t]))
    lines = ["", "## TensorRT readiness (static: the parser rules of each line, no TensorRT ran)", "",
             "| file | " + " | ".join(targets) + " |", "|---|" + "---|" * len(targets)]
    for f in files:
        cells = [_cell(recorded[t].get(f, "–").split(" (")[0].split(":")[0]) for t in targets]
        lines.append(f"| `{f}` | " + " | ".join(cells) + " |")
    reasons = {line for t in targets for line in recorded[t].values() if not line.startswith("ready")}
    lines += [""] + [f"- {_cell(r)}" for r in sorted(reasons)]
    return lines


def _accuracy_by_precision(result: VerifyResult, stale: set[str], reference_stale: str | None,
                           classes: bool = True) -> list[str]:
    seen: dict[tuple[str, str], list[str]] = {}
    for r in result.results:
        if r.accuracy is not None:
            seen.setdefault((str(r.target.precision), str(r.target.artifact)), []).append(
                f"{r.target.backend} {r.accuracy:.4f}")
    # a model without classes, or no test split, has no accuracy: said, not a table with no rows (attacking)
    lines = ["| precision | artefact | accuracy (per backend) |", "|---|---|---|"] if seen else [
        "No accuracy: no result was scored on a test split ("
        + (f"{result.reference.get('test_split') or 'none'}" if classes else "a model without classes has none")
        + ")."]
    for (precision, artifact), values in seen.items():
        lines.append(f"| {precision} | {artifact} | {', '.join(values)}{' ' + STALE if artifact in stale else ''} |")
    ref = result.reference
    lines.append(f"\nReference: {ref['backend']} {ref['precision']} from `{ref['source']}`, test accuracy "
                 f"{_fmt(ref.get('accuracy'), '.4f')} ({ref.get('test_split')})"
                 + (f"; NOT CURRENT: {_cell(reference_stale)}" if reference_stale else "") + ".")
    return lines


def truth_text(value: float, head: str, labels: Sequence[str]) -> str:
    """A sample's true answer as a person reads it: the label's name (``model.json``'s labels, never the
    class index), or a regression target."""
    if head in CLASSIFIERS:
        index = int(value)
        if not 0 <= index < len(labels):
            return f"class index {index}"
        shown = printable(labels[index], 40)
        # a cut name gets its index too: two long names alike up to the cut read as one (found by attacking)
        return f"label {shown}" + (f" (class {index})" if shown != printable(labels[index]) else "")
    return f"target {value:.4g}" if head == "regression" else ""


def heatmap_figure(samples: dict[str, Any], head: str, labels: Sequence[str], created: str | None = None,
                   changed: bool = False) -> Any:
    """The attention figure: one panel per sample sequence, rows are targets (backend and file), columns are
    time steps (integer ticks, trimmed to the length); one colour scale from 0 to the largest weight across
    every panel, so that panels compare and a small difference does not look large. Its title names the verify
    it shows (``created``) and, when files it shows have ``changed`` since, says NOT CURRENT: the image is
    opened on its own too (found by attacking: only report.md said so)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    names = list(samples["by_target"])
    n = len(samples["indices"])
    grids = [np.array([samples["by_target"][name][k] for name in names], dtype=np.float64) for k in range(n)]
    top = max(float(g.max()) for g in grids) or 1.0
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.2 + 0.3 * len(names) * n + 0.9 * n), dpi=110, squeeze=False,
                             layout="constrained")
    fig.suptitle("Attention weight per time step: each backend and file on the same test sequences"
                 + (f"\nverify of {created}" if created else "")
                 + ("\nNOT CURRENT: files shown here have changed since this verify" if changed else ""),
                 fontsize=10, color="firebrick" if changed else "black")
    image = None
    for k, ax in enumerate(axes[:, 0]):
        image = ax.imshow(grids[k], aspect="auto", cmap="viridis", interpolation="nearest", vmin=0.0, vmax=top)
        ax.set_yticks(range(len(names)), labels=names, fontsize=8)
        truth = truth_text(samples["labels"][k], head, labels)
        ax.set_title(f"test sequence {samples['indices'][k]} (length {samples['lengths'][k]}"
                     + (f", {truth})" if truth else ")"), fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(axis="x", labelsize=8)
        ax.set_xlabel("time step", fontsize=8)
    bar = fig.colorbar(image, ax=list(axes[:, 0]), fraction=0.03)
    bar.set_label("attention weight (softmax over time)", fontsize=8)
    return fig


def attention_heatmaps(directory: Path, samples: dict[str, Any], head: str, labels: Sequence[str],
                       created: str | None = None, changed: bool = False) -> str | None:
    """``heatmap_figure`` written to DIR/attention.png (atomically); None when there is nothing to draw."""
    import matplotlib.pyplot as plt

    if not samples["by_target"]:
        return None
    # a label in a script the font lacks is drawn as boxes, not said on the console once per glyph (found by
    # attacking: six matplotlib warnings with their source lines)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"Glyph \d+ .* missing from font", UserWarning)
        fig = heatmap_figure(samples, head, labels, created, changed)
        with store.atomic_path(directory / ATTENTION_PNG) as tmp:
            fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return ATTENTION_PNG


def _attention_agreement(samples: dict[str, Any], stale: set[str]) -> list[str]:
    import numpy as np

    names = list(samples["by_target"])
    if len(names) < 2:
        return []
    base = names[0]
    lines = [f"Largest attention difference from `{base}` over the samples:", ""]
    for name in names[1:]:
        worst = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                    for a, b in zip(samples["by_target"][name], samples["by_target"][base]))
        marked = {n for n in (name, base) if n.split(" ", 1)[-1] in stale}
        lines.append(f"- `{name}`: {worst:.2e}" + (f" {STALE}" if marked else ""))
    return lines


def _conformance_table(cells: list[ConformanceCell], stale: set[str]) -> list[str]:
    """Runtime x artefact: which independent ONNX implementations compute the model the same way."""
    entries = [c.to_dict() for c in cells]
    files = list(dict.fromkeys(e["artifact"] for e in entries))
    ran = [e for e in entries if e["status"] != "not run"]
    runtimes = list(dict.fromkeys(e["runtime"] for e in ran))
    lines = ["Each runtime ran the same sweep and test split as the verify table, judged by the same rules; a "
             "runtime that cannot read an artefact says why in its own words.", "",
             "| runtime | " + " | ".join(f"`{f}`" for f in files) + " |", "|---|" + "---|" * len(files)]
    cells = {(e["runtime"], e["artifact"]): e for e in ran}
    for runtime in runtimes:
        row = []
        for f in files:
            e = cells.get((runtime, f))
            if e is None:
                row.append("–")
                continue
            if e["status"] == "passed":
                ratio = e.get("worst_ratio")
                row.append("passed" + (f" ({ratio:.2f} of budget)" if ratio is not None else "")
                           + (" (one sequence at a time)" if e.get("detail") == ONE_BY_ONE else "")
                           + (f" {CARRIED}" if e.get("carried_from") else ""))
            else:
                row.append(f"**{e['status']}**" + (f" {CARRIED}" if e.get("carried_from") else "")
                           + f": {_cell(e['detail'])}")
            if f in stale:
                row[-1] += f" {STALE}"
        lines.append(f"| {runtime} | " + " | ".join(row) + " |")
    one = sorted({f"`{e['artifact']}`" for e in ran if e["status"] == "passed" and e.get("detail") == ONE_BY_ONE})
    if one:
        lines += ["", f"{', '.join(one)}: judged {ONE_BY_ONE}."]
    # not run: unavailable here, or opt-in and not named (openvino-bf16): said so with the reason, never "reads it"
    skipped = dict.fromkeys(f"{e['runtime']} ({_cell(e['detail'])})" for e in entries if e["status"] == "not run")
    if skipped:
        lines += ["", "Not run: " + "; ".join(skipped)]
    return lines


def _changed_since_bench(s: Store, bench: dict[str, Any]) -> dict[str, str] | None:
    """Each file bench timed whose bytes here are not the ones it timed, with why; None when bench.json
    records no sha256 of what it timed (an older attn-export's)."""
    timed = bench.get("artifacts")
    if not isinstance(timed, dict):
        return None
    return {name: p for name, p in ((name, s.measured(name, str(sha))) for name, sha in timed.items()) if p}


def _calls(bench: dict[str, Any]) -> str:
    """How many calls the rows timed, beside the budget that was to decide it (found by attacking: "0.05 s
    per shape" where every row took its minimum of 21 calls, and a p99 of 21 samples is their maximum)."""
    calls = sorted(int(r["iterations"]) for r in bench.get("results", []) if r.get("iterations"))
    if not calls:
        return ""
    least = calls[0]
    return (f" ({least}–{calls[-1]} timed calls a row" if least != calls[-1] else f" ({least} timed calls a row") + (
        "; a p99 of under 100 calls is near their slowest" if least < 100 else "") + ")"


def _bench_section(s: Store, bench: dict[str, Any]) -> list[str]:
    from .runtime.recommend import measured_by

    lines = [f"Measured by {measured_by(bench['method'])}.", "",
             f"CPU: {bench['machine'].get('cpu', bench['machine'].get('processor'))}"
             + (f" ({', '.join(bench['machine']['isa'])})" if bench["machine"].get("isa") else "") + "; "
             f"threads: {bench['machine'].get('threads') or 'default'}; {bench['machine'].get('cpu_count')} CPUs; "
             f"{bench['method']['timing']}; interleaved in blocks (each target timed warm), a budget of "
             f"{bench['method']['seconds_per_shape']} s per shape" + _calls(bench) + ".", ""]
    stale = _changed_since_bench(s, bench)
    gone = set(stale or ())  # the files whose timed bytes are not the ones here: each row of them marked
    if stale is None:
        lines += [f"- not current: {store.BENCH_JSON} records no sha256 of what it timed (made by an older "
                  f"attn-export): run {store.made_by(store.BENCH_JSON, s.directory)} again", ""]
    else:
        lines += [f"- not current: {_cell(p)}" for p in stale.values()] + ([""] if stale else [])

    from .bench import row_key, shown_as

    marked = {row_key(r) for r in bench.get("results", []) if r.get("artifact") in gone}
    names = shown_as(bench.get("results", []))

    def row(key: str) -> str:  # found by attacking: only the list above said so, not the rows of the tables
        return names.get(key, key) + (f" {STALE}" if key in marked else "")

    for file in (bench.get("plots") or {}).values():
        lines.append(f"![{file}]({file})")
    # the batch the fit was made at, which is not always 1 (found by attacking)
    fitted = next(iter(bench["scaling"].values()), {}).get("batch", "–")
    lines += ["", f"| target | per step (batch {fitted}) | intercept | r² | throughput by batch (seq/s, at seq) |",
              "|---|---|---|---|---|"]
    for key, scaling in bench["scaling"].items():
        fit = scaling.get("seq_fit") or {}
        # at which length: a throughput says nothing without it (found by attacking)
        tput = ", ".join(f"b{b}: {v:,.0f}" for b, v in scaling["throughput_by_batch"].items()) + (
            f" (seq {scaling['seq']})" if scaling.get("seq") else "")
        per_step, intercept = (duration_text(fit[k]) if fit.get(k) is not None else "–"
                               for k in ("ms_per_step", "intercept_ms"))
        lines.append(f"| {row(key)} | {per_step} | {intercept} | {_fmt(fit.get('r2'), '.4f')} | {tput} |")
    fits = [scaling.get("seq_fit") or {} for scaling in bench["scaling"].values()]
    if any(fit.get("ms_per_step") is not None and fit.get("r2") is None for fit in fits):  # found by attacking: a bare "–", where the console said why
        lines += ["", "r² –: a line through two lengths fits them exactly (no r²; time three or more for one)."]
    # as the console says them (found by attacking: the report showed a -488 µs intercept without a word)
    caveats = [f"- {row(key)}: {said}" for key, scaling in bench["scaling"].items()
               if (fit := scaling.get("seq_fit")) and fit.get("ms_per_step") is not None and (said := fit_caveat(fit))]
    lines += ["", "No cost to plan with:", "", *caveats] if caveats else []
    ratios = bench["ratios"]
    lines += ["", f"Speed-up over `{ratios['reference']}` (its p50 / the target's p50):", ""]
    shapes = list(ratios["by_shape"])
    if shapes:
        keys = list(dict.fromkeys(k for v in ratios["by_shape"].values() for k in v))
        lines += ["| target | " + " | ".join(shapes) + " |", "|---|" + "---|" * len(shapes)]
        for key in keys:
            lines.append(f"| {row(key)} | " + " | ".join(_fmt(ratios["by_shape"][shape].get(key), '.2f') + (
                "x" if ratios["by_shape"][shape].get(key) is not None else "") for shape in shapes) + " |")
    return lines + _recommended_lines(s, bench)


def _recommended_lines(s: Store, bench: dict[str, Any]) -> list[str]:
    """What to deploy on this CPU per shape and overall (``runtime.recommend``), against PyTorch eager."""
    from .runtime.recommend import (beyond_judged, caveat, current, judged_within, not_timed, other_cpu, rule_text,
                                    verified_pairs)
    from .runtime.bundle import refusal

    rec = bench.get("recommended")
    chosen, why_not = current(s)
    # what a CPU bundle ships, said whatever bench picked (found by attacking: nothing was said when it picked
    # nothing, or its bench.json had no pick at all)
    computes = REGISTRY[chosen["backend"]].computes if chosen and chosen["backend"] in REGISTRY else None
    own = (f" It computes in {computes}: the device needs {computes} arithmetic, and the bundle's steps verify the "
           "pair there by name before predict runs it.") if computes else ""
    refused = refusal(s, "cpu")
    ships = ["", f"`attn-export bundle --for cpu` refuses this directory until these are remade or removed: {refused}."
             if refused else
             f"`attn-export bundle --for cpu` ships {chosen['backend']} `{chosen['artifact']}` as the bundle's "
             f"recommended pair (its predict line; predict without --backend and --precision runs FP32).{own}"
             if chosen else f"`attn-export bundle --for cpu` recommends no pair: {why_not}."]
    if not rec:
        return ships
    where = f"{rec['cpu']} ({', '.join(rec.get('isa') or [])}), threads {rec.get('threads') or 'default'}"
    if not rec.get("by_shape"):
        return ["", f"Recommended on {where}: nothing ({rec.get('reason') or 'no verified pair was timed'})."] + ships
    rule = (f"the pair to deploy, among those `verify` had passed when bench ran: "
            f"{rule_text(rec['margin'], rec['default'])}" if "margin" in rec else "the fastest pair `verify` had passed")
    lines = ["", f"**Recommended** ({rule}, on {where}; *now*: what the file's verdict is today):", "",
             f"| shape | backend | artefact | p50 | torch eager p50 | speed-up | vs {rec.get('default', 'default')} "
             "| now |", "|---|---|---|---|---|---|---|---|"]
    rows = list(rec["by_shape"].items()) + ([("overall (geometric mean)", rec["overall"])] if rec.get("overall")
                                            else [])
    pairs, why = verified_pairs(s)  # the pair itself, as bundle weighs it: its file's verdict alone said
    elsewhere = other_cpu(s)
    ranges = judged_within(s)  # "verified" with verify.json deleted (found by attacking)
    for shape, r in rows:
        trust = s.state(r["artifact"])
        # found by attacking: another model's bench.json said "verified" here beside "is not current" below
        other = not_timed(s, bench, r["artifact"])
        now = (other if other else trust.verdict if trust.verified is not True
               else "verified" + _loosened(s, r["artifact"], r["backend"])
               + (f"; {beyond}" if (beyond := beyond_judged(r["precision"], ranges.get(r["precision"]),
                                                             r.get("shapes") or [shape])) else "")
               if (r["backend"], r["artifact"]) in pairs
               else f"not verified on this CPU: {elsewhere[r['backend'], r['artifact']]}"
               if (r["backend"], r["artifact"]) in elsewhere
               else f"no passing row in {VERIFY_JSON} now ({why or 'a later verify did not run this pair'})")
        said = caveat(r, passed_over=shape in rec["by_shape"])
        lines.append(f"| {shape}{f' ({_cell(said)})' if said else ''} | {r['backend']} | `{r['artifact']}` | "
                     f"{duration_text(r['p50_ms'])} | "
                     f"{'–' if r['torch_p50_ms'] is None else duration_text(r['torch_p50_ms'])} | "
                     f"{'–' if r['ratio'] is None else format(r['ratio'], '.2f') + 'x'} | "
                     f"{'–' if r.get('vs_default') is None else format(r['vs_default'], '.2f') + 'x'} | {_cell(now)} |")
    note = (rec.get("overall") or {}).get("note")
    return lines + ([""] + [f"Overall: {note}."] if note else []) + ships


def _loosened(s: Store, name: str, backend: str | None = None) -> str:
    """" with --set ..." beside a verdict given under overrides that can move it (``Store.loosened``), as
    verify's headline says it (found by attacking: the Recommended and Artefacts lines said a bare verdict)."""
    computes = REGISTRY[backend].computes if backend in REGISTRY else None
    said = s.loosened(name, computes)
    return f" with --set {', '.join(said)}" if said else ""


def _standing(s: Store, result: VerifyResult) -> tuple[str, list[str]]:
    """What the manifest and the current bytes say of verify.json's results (the store's answer): the
    headline word (PASSED only when every artefact verify.json judged is still current, still the bytes
    verify ran, and holds a passing verdict recorded from this very verify.json) and every reason it is not."""
    unrecorded = result.unrecorded(s)
    if unrecorded is not None:
        return "NOT CURRENT", [unrecorded]
    judged = dict.fromkeys(str(r.target.artifact) for r in result.results if r.status != "skipped" and r.target.artifact)
    problems = [p for p in (s.judged(name, VERIFY_JSON) for name in judged) if p]
    failed = not result.passed or any((s.entry(n) or {}).get("verified", {}).get("passed") is not True
                                      for n in judged if s.judged(n, VERIFY_JSON) is None)
    return ("FAILED" if failed else "NOT CURRENT" if problems else "PASSED"), problems


def _verify_section(s: Store, result: VerifyResult) -> list[str]:
    directory = s.directory
    ref, sweep = result.reference, result.sweep
    word, problems = _standing(s, result)
    ran = result.ran()
    carried = sum(1 for r in ran if r.carried_from)
    loosened = f" with {result.loosened_as('`')}" if result.loosened else ""
    lines = [f"**Verification {word}**{loosened} against {ref['backend']} "
             f"{ref['precision']} (`{ref['source']}`); {sweep['cases']} sweep cases ({sweep['padded']} padded with "
             f"garbage), shapes {', '.join(f'{b}x{t}' for b, t in sweep['shapes'])}"
             + (f"; verify of {result.created}" if result.created else "")
             + (f"; {carried} of {len(ran)} results carried over from earlier verifies, not re-run "
                f"(marked {CARRIED})" if carried else "") + ".", ""]
    lines += [f"- not current: {_cell(p)}" for p in problems] + ([""] if problems else [])
    # a graph this verify did not judge that is not current either: PASSED does not cover it, and bundle
    # refuses the directory while it is there (found by attacking: the headline said PASSED, bundle refused)
    judged = {str(r.target.artifact) for r in result.results if r.status != "skipped"}
    others = [t.reason for t in (s.state(n) for n in artifact_names(s, "cpu") if n not in judged) if not t.current]
    lines += [f"- not judged by this verify, and not current (bundle refuses the directory until it is made again "
              f"or removed): {_cell(str(p))}" for p in others] + ([""] if others else [])
    lines += [f"- {_cell(line)}" for line in result.not_carried] + ([""] if result.not_carried else [])
    lines += ["## Verify", ""]
    stale: set[str] = set()  # files whose results here no longer describe them: every table marks them
    for r in result.results:  # a row whose artefact is no longer the one verified says so in its reason
        why = s.measured(r.target.artifact, r.sha256) if r.status != "skipped" else None
        if why is not None:
            r.reason = f"NOT CURRENT: {why}" + (f"; {r.reason}" if r.reason else "")
            stale.add(str(r.target.artifact))
    lines += _verify_table(result, stale)
    moved = result.unjudged_decisions()
    lines += (["", "Not judged (a precision judged by its decisions on the test split, and on the sweep's "
               "sequences shorter than the split's; the sweep's inputs are random, and near a boundary, on "
               "longer sequences or in other chunks a correct INT8 graph may move a decision):", ""]
              + [f"- {_cell(line)}" for line in moved] if moved else [])
    if result.conformance:
        lines += ["", "## One graph, every runtime", ""] + _conformance_table(result.conformance, stale)
    lines += ["", "Budgets (from the recipe's `[verify]` table" + (f", with {', '.join(result.overrides)}"
                                                                 if result.overrides else "") + "):", ""]
    classes = s.has_classes()
    # by each row's rule (found by review: FP32 on a GPU is judged by "fp32-gpu", which no row's precision names)
    ran = {tolerance_key(str(r.target.precision), REGISTRY[r.target.backend].device
                         if r.target.backend in REGISTRY else "cpu") for r in result.ran()}
    unused = []
    for precision, rule in result.tolerances.items():
        if rule["atol"] is None and not classes:  # found by attacking: argmax rules listed for a regression model
            lines.append(f"- {precision}: not judged: it is judged by its decisions, and a model without classes "
                         "has none")
            continue
        if precision not in ran:  # found by attacking: "bf16: ..." on a CPU where openvino-bf16 cannot run
            unused.append(precision)
            continue
        judged = (f"atol {rule['atol']:g} + rtol {rule['rtol']:g} x the reference + {rule.get('multiple', 0):g} x "
                  f"the model's own {rule.get('budget_precision')} error" if rule["atol"] is not None
                  else f"argmax agreement and accuracy drop on the test split; on the sweep's sequences shorter "
                  f"than the split's, no decision moved with an error over {rule.get('multiple', 0):g} x the "
                  "largest at the split's lengths")
        if rule.get("mean_multiple"):
            # the backends' own allowances, not the rows' (a carried row may be of other settings: found by review)
            wider = {r.target.backend: REGISTRY[r.target.backend] for r in result.ran()
                     if r.target.precision == precision and r.target.backend in REGISTRY
                     and REGISTRY[r.target.backend].mean_allowance != 1}
            judged += (f", on average at most {rule['mean_multiple']:g} x"
                       + "".join(f" ({rule['mean_multiple'] * cls.mean_allowance:g} x on {backend}: "
                                 f"{cls.mean_allowance_why})" for backend, cls in wider.items())
                       + (f", up to seq {rule['deployment_max_seq']} (beyond: finite, {'argmax, ' if classes else ''}"
                          "zero attention on padding)" if rule.get("deployment_max_seq") else
                          ", at every length (no deployment range: every row by its budget)"))
        extra = [f"min argmax agreement {rule['min_argmax_agreement']}"] if rule["min_argmax_agreement"] and classes \
            else []
        extra += [f"max accuracy drop {rule['max_accuracy_drop']}"] if rule["max_accuracy_drop"] else []
        lines.append(f"- {precision}: {judged}" + (f"; {'; '.join(extra)}" if extra else ""))
    if unused:
        lines.append(f"- {', '.join(unused)}: no row of this verify ran in {'it' if len(unused) == 1 else 'them'}")
    reference_stale = None  # what the reference line stands on, when it changed since (an older file: no sha256)
    if ref.get("source") == store.WEIGHTS and store.WEIGHTS in stale:
        reference_stale = f"{store.WEIGHTS} is not the file this verify ran"
    elif ref.get("sha256") and ref["sha256"] != s.sha256(store.REFERENCE):
        reference_stale = f"{store.REFERENCE} is not the file this verify read"
    elif ref.get("sha256") and not s.state(store.REFERENCE).current:
        reference_stale = s.state(store.REFERENCE).reason
    lines += ["", "## Accuracy per precision", ""] + _accuracy_by_precision(result, stale, reference_stale, classes)
    lines += _tensorrt_readiness(s, result)
    samples = result.attention_samples
    if samples:
        info = s.info
        changed = any(k.split(" ", 1)[-1] in stale for k in samples["by_target"])
        image = attention_heatmaps(directory, samples, info.head, info.labels, result.created, changed)
        lines += ["", "## Attention on test sequences, per backend (shortest to longest)", ""]
        lines += [f"![attention]({image})", ""] if image else []
        lines += ([f"NOT CURRENT: these are the attention weights of the verify of {result.created}, on files "
                    "that have changed since.", ""] if changed else [])
        lines += _attention_agreement(samples, stale)
    return lines


def _artefacts_section(s: Store) -> list[str]:
    """Every recorded artefact and what the store says of it now: the lineage and bytes this report stands on."""
    lines = ["## Artefacts", "", "What the manifest records and the current bytes support (`attn-export inspect "
             f"{s.directory}` for more):", ""]
    listed = set(s.lacking()) | set(s.present())  # recorded and gone too, as inspect lists them (found by attacking)
    for name in [n for n in s.entries if n in listed]:
        trust = s.state(name)
        if not trust.current:
            lines.append(f"- not current: {_cell(trust.reason)}")
        else:
            # a file with a verdict says it, as inspect does (the weights' torch-cpu verdict was left out)
            verifiable = name.endswith(".onnx") or store.is_engine(name) or trust.verified is not None
            verdict = (s.entry(name) or {}).get("verified")
            # kept for these bytes from a verify whose rows the verify.json here no longer holds (found by
            # attacking: a later verify of two backends left the INT8 files "passed", the evidence gone)
            earlier = (isinstance(verdict, dict) and s.read(VERIFY_JSON) is not None
                       and verdict.get("verify_sha256") != s.sha256(VERIFY_JSON))
            lines.append(f"- `{name}`: current" + (f"; it {trust.verdict}{_loosened(s, name)}" if verifiable else "")
                         + (f" (in an earlier verify, whose rows the {VERIFY_JSON} here does not hold: run "
                            f"{store.made_by(VERIFY_JSON, s.directory)} to judge it again)" if earlier else ""))
    return lines


def _test_split(trained: dict[str, Any]) -> str:
    """How many sequences the accuracy was measured on (found by attacking: 0.98 read alike on 50 rows or 5000)."""
    n = trained.get("sizes", {}).get("test")
    return f" on {n} test sequence{'s' * (n != 1)}" if n is not None else ""


class Baseline(NamedTuple):
    """The training split's most common class (of several tied, the best on the test split), the test accuracy
    of always deciding it, how many classes tie as the most common and the training sequences of each."""

    label: str
    accuracy: float
    tied: int
    each: int

    def which(self) -> str:
        """The class that scores ``accuracy``, said as a tie where it is one (found by attacking: "the most
        common class, 3" of nine with 26 each)."""
        return ("the most common class" if self.tied == 1 else
                f"the best of {self.tied} classes tied as the most common")


def majority_baseline(trained: dict[str, Any]) -> Baseline | None:
    """The training split's most common class and the test accuracy of always deciding it (``Baseline``): the
    score a model must beat to have learnt anything (None without per-class counts, an older
    ``metrics.json``, or an empty test split)."""
    classes = trained.get("classes") or []
    tested = sum(c["test"] for c in classes)
    if not tested:
        return None
    # of classes tied in training, the one that scores most: the bar a model must clear (found by attacking: A of
    # A and B, 40 each, scored 0.10 where B scored 0.90, and a 0.46 model read as beating it)
    common = max(classes, key=lambda c: (c["train"], c["test"]))
    tied = sum(1 for c in classes if c["train"] == common["train"])
    return Baseline(common["label"], common["test"] / tested, tied, common["train"])


def _classes(trained: dict[str, Any]) -> list[str]:
    """Each class's sequences per split and its test accuracy, under the baseline of always deciding the most
    common one (found by attacking: the report named no class, so 0.73 on a test split 70 % one class read as
    a model that had learnt something)."""
    classes = trained.get("classes")
    if not classes:
        return []
    baseline = majority_baseline(trained)
    # a tie named as one (found by attacking: "the most common class, 3" of nine with 26 each), as train says it
    lines = ([f"Always deciding {baseline.which()} of the training split, {_label(baseline.label)} "
              f"({baseline.each} training sequences{' each' if baseline.tied > 1 else ''}), would score "
              f"{baseline.accuracy:.4f} on the test split.", ""] if baseline else [])
    return lines + ["| class | train | val | test | test accuracy |", "|---|---|---|---|---|"] + [
        f"| {_label(c['label'])} | {c['train']} | {c['val']} | {c['test']} | "
        f"{format(c['test_correct'] / c['test'], '.4f') if c['test'] else '–'} |" for c in classes] + [""]


def _training_run(trained: dict[str, Any]) -> str:
    """The seed and the epochs that made the weights: what to give train to make them again."""
    planned, best = trained.get("epochs_planned"), trained.get("best_epoch")
    epochs = (f"{trained['epochs']} of {planned} epochs" if planned is not None else f"{trained['epochs']} epochs")
    if trained.get("stopped_early"):
        epochs += ", stopped early"
    if best is not None:
        epochs += f", the weights of epoch {best}"
    return f" (seed {trained['seed']}; {epochs})" if "seed" in trained and "epochs" in trained else ""


@store.writes_directory("report")
def write_report(directory: Path) -> Path:
    """Render DIR/report.md (and attention.png, and bench's plots) from the results DIR holds: verify.json, bench.json,
    metrics.json. A missing one gets a line saying which command makes it; none at all is an error."""
    verify_path, bench_path = directory / VERIFY_JSON, directory / store.BENCH_JSON
    if not verify_path.is_file() and not bench_path.is_file():
        store.require(directory, store.MODEL_JSON)
        if Store(directory).below_floor():  # a run stopped at train's floor says so (found by attacking: nothing
            return _write(directory)  # was written in a new directory, while the README says it is)
        raise MissingPrerequisite(f"{directory} has no results to report (neither {VERIFY_JSON} nor {store.BENCH_JSON}); "
                                  f"run attn-export verify {shell_word(directory)} and attn-export bench "
                                  f"{shell_word(directory)} first")
    return _write(directory)


def _write(directory: Path) -> Path:
    verify_path, bench_path = directory / VERIFY_JSON, directory / store.BENCH_JSON
    s = Store(directory)
    lines = [f"# attn-export report: {directory.name}", ""]
    metrics = s.state(store.METRICS)
    if metrics.current:
        trained = store.parse_json(s.read(store.METRICS) or b"", directory / store.METRICS, schema.METRICS)
        test = trained["test"]
        # which data: the report had named neither it nor the model (found by attacking)
        split = _test_split(trained)
        on = (f" {'of' if split else 'on'} `{_cell(str(trained['data']))}`" if isinstance(trained.get("data"), str)
              else "")
        if test.get("accuracy") is not None:
            lines += [f"Trained model: test accuracy {test['accuracy']:.4f}{split}{on}"
                      f"{_training_run(trained)} (`{store.METRICS}`).", ""]
        lines += _classes(trained)
    # a recorded one removed is said (found by attacking: the line was gone); a loaded model never had one
    elif metrics.state != "missing" or store.METRICS in s.lacking():
        lines += [f"Trained model: not shown: {_cell(metrics.reason)}.", ""]
    below = s.below_floor()
    if below:
        lines += [f"**BELOW THE RECIPE'S ACCURACY FLOOR**: {_cell(below)}.", ""]
    if s.read(VERIFY_JSON) is not None:
        lines += _verify_section(s, VerifyResult.from_dict(store.parse_json(s.read(VERIFY_JSON) or b"", verify_path,
                                                                            schema.VERIFY)))
    elif any(s.state(name).verified is not None for name in s.present()):
        # found by attacking: "Not verified yet" above an Artefacts list saying "it passed verify"
        lines += ["## Verify", "", f"**Verification results missing**: no `{VERIFY_JSON}`, while `{store.MANIFEST}` "
                  "records the verdicts of a verify (Artefacts, below); run `attn-export verify "
                  f"{shell_word(directory)}`, then `attn-export report {shell_word(directory)}`, for its tables."]
    else:
        lines += ["## Verify", "", f"Not verified yet: run `attn-export verify {shell_word(directory)}`, then "
                  f"`attn-export report {shell_word(directory)}`."]
    lines += ["", "## Latency and throughput", ""]
    if s.read(store.BENCH_JSON) is not None:
        bench = store.parse_json(s.read(store.BENCH_JSON) or b"", bench_path, schema.BENCH)
        if bench.get("plots"):  # drawn again from bench.json: a bench stopped between its plots and its JSON
            from .bench import write_plots  # had left new plots beside the old figures (found by attacking)

            bench["plots"] = write_plots(directory, bench, set(_changed_since_bench(s, bench) or ()))
        lines += _bench_section(s, bench)
    else:
        lines += [f"Not measured yet: run `attn-export bench {shell_word(directory)}`, then `attn-export report "
                  f"{shell_word(directory)}`."]
    lines = [_no_html(line) for line in lines + [""] + _artefacts_section(s)] + ["", _record(s)]
    path = directory / REPORT_MD
    store.write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


# report.md's last line: the sha256 of each file it was rendered from (the artefacts, and verify.json and
# bench.json, null when absent), an HTML comment Markdown does not show; inspect reads it back (``not_describing``)
_RECORD = ("<!-- attn-export report of: ", " -->")
_RESULTS = (VERIFY_JSON, store.BENCH_JSON)


def _record(s: Store) -> str:
    rendered = {name: s.sha256(name) for name in [*s.present(), *_RESULTS]}
    return f"{_RECORD[0]}{json.dumps(rendered, sort_keys=True)}{_RECORD[1]}"


def not_describing(s: Store) -> list[str]:
    """Why DIR's report.md (and the attention.png drawn with it) no longer describes what DIR holds: a file it
    was rendered from changed, went or cannot be read, a result made since (a first verify or bench), an
    artefact recorded since or no longer recorded; [] when it still does (found by attacking: after a train
    into the directory, or a run killed after its train, the old report said PASSED of weights that were
    gone, and inspect listed it, and the attention figure drawn with it, as plain results)."""
    last = (s.read(REPORT_MD) or b"").decode("utf-8", "replace").rstrip().rsplit("\n", 1)[-1]
    rendered: Any = None
    if last.startswith(_RECORD[0]) and last.endswith(_RECORD[1]):
        try:
            rendered = json.loads(last[len(_RECORD[0]):-len(_RECORD[1])])
        except ValueError:
            rendered = None
    if not isinstance(rendered, dict) or not all(v is None or isinstance(v, str) for v in rendered.values()):
        return [f"not current: it records no sha256 of what it was rendered from (made by an older attn-export, or "
                f"edited): run attn-export report {shell_word(s.directory)}"]
    problems = []
    for name, sha in rendered.items():
        try:
            now = s.sha256(name)
        except (AttnExportError, OSError) as e:
            problems.append(f"{name} cannot be read ({e})")
            continue
        if now != sha:
            problems.append(f"{name} is gone since this report" if now is None else
                            f"{name} was made since this report" if sha is None else f"{name} changed since this report")
        elif sha is not None and name not in _RESULTS and s.entry(name) is None:
            problems.append(f"{name} is no longer recorded in {store.MANIFEST}")
    problems += [f"{name} was recorded since this report" for name in s.present() if name not in rendered]
    return [f"not current: {why}" for why in problems]


# the lines of a report that say its verdict and what a CPU bundle ships (this module writes each of them)
HEADLINES = ("**Verification", "**BELOW", "Not verified yet", "`attn-export bundle --for cpu`")


def headline(path: Path) -> list[str]:
    """A written report's verdict lines, as plain text (what ``attn-export report`` prints)."""
    return [line.replace("**", "").replace("`", "") for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith(HEADLINES)]

"""The README's measured wall times, from one script: ``attn-export run`` on the quickstart and on
JapaneseVowels, each ``--repeats`` times in a fresh process and a fresh directory, with the machine named.

    python scripts/measure_readme.py [--repeats 3] [--write]

Each run is a child process (``python -m attn_export``'s own code path through ``attn_export.run``: the
import time counts, as it does for a user) that prints its stage times as JSON; the wall time is taken
around the child. It prints a markdown table of ranges (min-max over the repeats) per recipe and stage,
headed by the CPU, its core count, the date and the versions; ``--write`` puts it into README.md between
the ``measured:begin`` and ``measured:end`` markers. Numbers depend on the machine and on what else runs on
it: they are ranges from one machine, not promises.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from attn_export.runtime.timing import cpu_name  # noqa: E402

RECIPES = {"quickstart (built in)": None, "japanese-vowels": "recipes/japanese-vowels.toml"}
STAGES = ("train", "export", "quantize", "build", "verify", "bench", "report")
CHILD = """
import json, sys
import attn_export as ax
recipe = ax.load_recipe(sys.argv[1] if sys.argv[1] != "-" else None)
result = ax.run(recipe, __import__("pathlib").Path(sys.argv[2]))
print(json.dumps({"stages": {s.name: s.seconds for s in result.stages}, "passed": result.passed}))
"""
BEGIN, END = "<!-- measured:begin -->", "<!-- measured:end -->"


def measure(recipe: str | None, repeats: int) -> list[dict]:
    runs = []
    for k in range(repeats):
        with tempfile.TemporaryDirectory(prefix="attn-export-measure-") as tmp:
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", CHILD, recipe or "-", str(Path(tmp) / "out")], cwd=ROOT,
                                  capture_output=True, text=True, timeout=3600)
            wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"run {k + 1} of {recipe or 'quickstart'} failed:\n{done.stderr[-3000:]}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
        runs.append({"wall": wall, **out})
        print(f"{recipe or 'quickstart'} run {k + 1}/{repeats}: {wall:.1f} s", file=sys.stderr)
    return runs


def span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.1f}" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}–{high:.1f}"


def table(results: dict[str, list[dict]], repeats: int) -> str:
    cpu, isa = cpu_name()
    import attn_export
    import onnxruntime
    import torch

    head = (f"Measured by `python scripts/measure_readme.py --repeats {repeats}` on "
            f"{datetime.date.today().isoformat()}: {cpu} ({', '.join(isa) or 'no flags read'}), "
            f"{len(os.sched_getaffinity(0))} cores, no GPU; attn-export {attn_export.__version__}, torch "
            f"{torch.__version__}, onnxruntime {onnxruntime.__version__}. Seconds, min–max over {repeats} runs, "
            "each a fresh process and directory; another load on the machine moves them.")
    lines = [head, "", "| recipe | whole `run` (wall) | " + " | ".join(STAGES) + " |",
             "|---|---|" + "---|" * len(STAGES)]
    for name, runs in results.items():
        cells = [span([r["stages"].get(s, 0.0) for r in runs]) for s in STAGES]
        lines.append(f"| {name} | {span([r['wall'] for r in runs])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="replace the table in README.md")
    args = parser.parse_args()
    results = {name: measure(recipe, args.repeats) for name, recipe in RECIPES.items()}
    text = table(results, args.repeats)
    print(text)
    if args.write:
        readme = ROOT / "README.md"
        old = readme.read_text()
        if BEGIN not in old or END not in old:
            raise SystemExit(f"README.md has no {BEGIN} ... {END} markers")
        new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: f"{BEGIN}\n{text}\n{END}", old, flags=re.S)
        readme.write_text(new)


if __name__ == "__main__":
    main()

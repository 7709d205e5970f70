"""Whether an INT8 verdict judged on this CPU holds on an x86 CPU without VNNI: each INT8 graph of DIR run on
its test split, one sequence at a time, here and under QEMU's user-mode emulator as a CPU without VNNI
(default Haswell: AVX2), in a plain ONNX Runtime session and in attn-export's (``exact_int8``). Measured, not
asserted.

    .venv/bin/python scripts/int8_without_vnni.py DIR [--cpu Haswell] [--limit N]

Needs ``qemu-x86_64`` (Debian's qemu-user) on an x86_64 machine. Each row: the largest |logit| difference from
this CPU's plain session, the decisions that moved from it, and the test accuracy. ONNX Runtime's kernels
are picked by the (emulated) CPUID; attn-export picks its session option from ``/proc/cpuinfo``, which under
qemu-user is the host's, so the emulated run is told its flags (``EMULATED_FLAGS``). QEMU 7.2 was checked
only on ONNX Runtime's paths (FP32 within 4e-6 of this CPU's); OpenVINO's JIT code came out wrong under it,
FP32 included, so it is not measured here.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile

import numpy as np

FILES = ("model.int8.onnx", "model.int8-qdq.onnx")
EMULATED_FLAGS = {"Haswell": ["avx2"], "Broadwell": ["avx2"], "Skylake-Client": ["avx2"], "Nehalem": []}


def child(directory: str, split: str, out: str, cpu: str) -> None:
    import onnxruntime

    from attn_export.runtime import store, timing
    from attn_export.runtime.backends.onnxrt import ort_session

    if cpu != "native":
        timing.cpu_name = lambda: (f"QEMU {cpu}", EMULATED_FLAGS[cpu])
    data = np.load(split)
    xs = [data[f"x{i}"] for i in range(int(data["n"]))]
    s = store.Store(directory)
    results = {}
    for name in FILES:
        if s.state(name).state == "missing":
            continue
        artifact = s.open(name, need="verified", allow_unverified=True)
        for kind, session in (("plain", onnxruntime.InferenceSession(artifact.data)),
                              ("attn-export", ort_session(artifact))):
            results[f"{name} {kind}"] = np.concatenate(
                [session.run(["logits"], {"x": x[None], "lengths": np.array([len(x)], np.int64)})[0] for x in xs])
    np.savez(out, **results)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of sequences, 1 or more")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory")
    parser.add_argument("--cpu", default="Haswell", choices=sorted(EMULATED_FLAGS))
    parser.add_argument("--limit", type=_positive, default=None, help="the first N test sequences only")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.directory, *args.child)
        return
    from attn_export.quantize import labelled_test_split
    from attn_export.runtime import store
    from attn_export.runtime.timing import cpu_name

    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        sys.exit("needs qemu-x86_64 (apt-get install qemu-user)")
    test, reason = labelled_test_split(store.Store(args.directory).model())
    if test is None:
        sys.exit(f"no test split: {reason}")
    n = min(test.n, args.limit or test.n)
    with tempfile.TemporaryDirectory() as tmp:
        split = f"{tmp}/split.npz"
        np.savez(split, n=n, **{f"x{i}": test.sequences[i].astype(np.float32) for i in range(n)})
        runs = {}
        for cpu, prefix in (("native", []), (args.cpu, [qemu, "-cpu", args.cpu])):
            out = f"{tmp}/{cpu}.npz"
            subprocess.run([*prefix, sys.executable, __file__, args.directory, "--child", split, out, cpu],
                           check=True, stderr=subprocess.DEVNULL if prefix else None)
            runs[cpu] = dict(np.load(out))
    here = cpu_name()
    emulated = ", ".join(EMULATED_FLAGS[args.cpu]) or "SSE4"
    print(f"this CPU: {here[0]} ({', '.join(here[1])}); emulated: QEMU {args.cpu} ({emulated}); "
          f"{n} test sequences, one at a time")
    print(f"{'graph':22} {'session':12} {'CPU':10} {'max |d logits|':>15} {'moved':>7} {'accuracy':>9}")
    y = test.y[:n]
    for key in runs["native"]:
        name, kind = key.split(" ")
        base = runs["native"][f"{name} plain"]
        for cpu, logits in ((c, runs[c][key]) for c in runs):
            moved = int((logits.argmax(1) != base.argmax(1)).sum())
            print(f"{name:22} {kind:12} {cpu:10} {np.abs(logits - base).max():15.3g} {moved:>7} "
                  f"{float((logits.argmax(1) == y).mean()):9.4f}")


if __name__ == "__main__":
    main()

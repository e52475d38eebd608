#!/usr/bin/env python3
"""expert_archive from Python, side by side with what users would do instead (Qwen3-30B-A3B rows:
48 layers x top-8, 128 experts, from `archive-tool synth`):

1. an LMDeploy decode loop: one row appended per step for STEPS steps, then get_real(), through
   the drop-in against a copy of LMDeploy's HistoryRouterExperts (np.pad growth);
2. a whole-archive read to int32 against numpy.load of the same rows as an int32 .npy (page cache
   warm) and against the Swift reader in-process (archive-bench --read-all), decoding on every CPU
   the process may use (the Reader's default) and on one;
3. a quarter of the layers against all layers.
Figures are the best of several runs.

usage: python_bench.py --tool ARCHIVE_TOOL --bench ARCHIVE_BENCH [--steps N] [--rows N] [--dir DIR]
(expert_archive importable: Benchmarks/run installs the package into .venv-test and runs this
with that venv's python; `PYTHONPATH=python/src EXPERT_ARCHIVE_LIBRARY=...` also works, with the
decode step's append through ctypes alone)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import expert_archive as ea
from expert_archive.integrations.lmdeploy import HistoryRouterExperts

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python" / "tests"))
from lmdeploy_reference import HistoryRouterExperts as LMDeployHistory  # noqa: E402


def best(runs: int, work) -> tuple[float, float]:
    """The best wall and the best CPU seconds of `runs` calls (CPU time is what a machine shared
    with other work still measures)."""
    walls, cpus = [], []
    for _ in range(runs):
        start, cpu = time.perf_counter(), time.process_time()
        work()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def swift_read(bench: str, path: Path, *layers: str, threads: int = 1, vector_kernels: bool = True) -> tuple[float, float]:
    """archive-bench --read-all; without vector_kernels, on the Swift kernels other CPUs run."""
    env = dict(os.environ, **({} if vector_kernels else {"EXPERT_ARCHIVE_VECTOR_KERNELS": "0"}))
    wall, cpu = subprocess.run([bench, "--read-all", str(path), "--threads", str(threads), *layers], check=True,
                               capture_output=True, text=True, env=env).stdout.split()
    return float(wall), float(cpu)


def decode_loop(steps: list[np.ndarray], history_type, **options) -> tuple[float, float, float, np.ndarray]:
    """Wall seconds of the appends, their CPU seconds (what a loaded machine's wall time hides),
    wall seconds of get_real(), and its rows."""
    history = history_type(**options)
    start, cpu = time.perf_counter(), time.process_time()
    for step in steps:
        history.append(step)
    appended, appended_cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    real = history.get_real()
    return appended, appended_cpu, time.perf_counter() - start, real


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tool", required=True)
    parser.add_argument("--bench", required=True)
    parser.add_argument("--steps", type=int, default=32768)
    parser.add_argument("--rows", type=int, default=262144)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(dir=args.dir))
    trace = work / "trace.npy"
    subprocess.run([args.tool, "synth", "--model", "qwen3-30b-a3b", "--tokens", str(max(args.rows, args.steps)),
                    "-o", str(trace), "--quiet"], check=True)
    rows = np.load(trace).astype(np.int32)

    print(f"### Python: LMDeploy decode loop, {args.steps} steps of one 48x8 row, then get_real()")
    steps = [np.ascontiguousarray(rows[i:i + 1].astype(np.uint16)) for i in range(args.steps)]
    results = {}
    contenders = [("LMDeploy HistoryRouterExperts (np.pad)", LMDeployHistory, {}),
                  ("expert_archive drop-in", HistoryRouterExperts, {"experts": 128})]
    # The runs alternate, so that a slower phase of a shared machine weighs on both sides.
    all_runs: dict[str, list] = {name: [] for name, _, _ in contenders}
    for _ in range(3):
        for name, history_type, options in contenders:
            all_runs[name].append(decode_loop(steps, history_type, **options))
    for name, _, _ in contenders:
        runs = all_runs[name]
        appended = min(r[0] for r in runs)
        appended_cpu = min(r[1] for r in runs)
        real = min(r[2] for r in runs)
        assert np.array_equal(runs[0][3], rows[:args.steps]) and runs[0][3].dtype == np.uint16
        results[name] = appended + real
        print(f"{name:42s} append {appended / args.steps * 1e6:6.2f} us per call ({appended_cpu / args.steps * 1e6:.2f} CPU), "
              f"get_real {real * 1e3:7.2f} ms, total {appended + real:6.3f} s")
    ours, theirs = results["expert_archive drop-in"], results["LMDeploy HistoryRouterExperts (np.pad)"]
    print(f"drop-in total vs LMDeploy's: x{theirs / ours:.1f} faster")
    path = work / "writer.moe"
    with ea.Writer.create(path, layers=48, topk=8, experts=128, overwrite=True) as w:
        start = time.perf_counter()
        for step in steps:
            w.append(step)
        seconds = time.perf_counter() - start
    print(f"{'Writer.append alone':42s} append {seconds / args.steps * 1e6:6.2f} us per call")

    for codec in ("fast", "compact"):
        path = work / f"{codec}.moe"
        with ea.Writer.create(path, layers=48, topk=8, experts=128, codec=codec, overwrite=True) as w:
            w.append(rows[:args.rows])
        npy = work / "rows-int32.npy"
        np.save(npy, rows[:args.rows])
        r = ea.Reader(path)
        single = ea.Reader(path, threads=1)
        n = len(r)
        gib = n * 48 * 8 * 4 / 2**30
        print(f"\n### Python: whole-archive read to int32, {n} rows ({gib:.2f} GiB as int32), {codec} codec, "
              f"archive {path.stat().st_size / 2**20:.1f} MiB, warm cache, {r.threads} decoding threads")
        out = np.empty((n, 48, 8), dtype=np.int32)
        r.read(out=out)
        np.load(npy)
        assert np.array_equal(out, rows[:args.rows])
        load = best(5, lambda: np.load(npy))
        fresh = best(5, lambda: r.read(dtype=np.int32))
        into = best(5, lambda: r.read(out=out))
        into_single = best(5, lambda: single.read(out=out))
        swift = swift_read(args.bench, path, threads=r.threads)
        swift_single = swift_read(args.bench, path)
        # What CPUs without AVX-512 VBMI2 run, in the same run.
        plain = swift_read(args.bench, path, threads=r.threads, vector_kernels=False)
        plain_single = swift_read(args.bench, path, vector_kernels=False)
        for name, (wall, cpu) in [("numpy.load of the int32 .npy", load), ("Reader.read(dtype=int32), new array", fresh),
                                  ("Reader.read(out=int32 array)", into), ("Swift ArchiveReader.read (in-process)", swift),
                                  ("Reader.read(out=...), 1 thread", into_single),
                                  ("Swift ArchiveReader.read, 1 thread", swift_single),
                                  ("Swift reader, no vector kernels", plain),
                                  ("Swift reader, no vector kernels, 1 thread", plain_single)]:
            print(f"{name:42s} {wall * 1e3:8.1f} ms  {gib / wall:6.2f} GiB/s of int32   CPU {cpu * 1e3:8.1f} ms  "
                  f"{gib / cpu:6.2f} GiB/s")
        for label, index in (("wall", 0), ("CPU", 1)):
            print(f"{label}: archive read vs numpy.load x{load[index] / fresh[index]:.2f} (new array), "
                  f"x{load[index] / into[index]:.2f} (into an array); Python vs Swift "
                  f"{into[index] / swift[index] * 100 - 100:+.0f}% (into an array), "
                  f"{fresh[index] / swift[index] * 100 - 100:+.0f}% (new array)")
        # Layer ranges on one thread, the way their cost compares with all layers' on one core.
        quarter_out = np.empty((n, 12, 8), dtype=np.int32)
        quarters = [best(5, lambda q=q: single.read(layers=slice(12 * q, 12 * q + 12), out=quarter_out)) for q in range(4)]
        quarter = (sum(q[0] for q in quarters) / 4, sum(q[1] for q in quarters) / 4)
        swift_quarter = swift_read(args.bench, path, "--layers", "12:24")
        plain_quarter = swift_read(args.bench, path, "--layers", "12:24", vector_kernels=False)
        print(f"{'a quarter of the layers (mean of 4)':42s} {quarter[0] * 1e3:8.1f} ms  = {quarter[0] / into_single[0] * 100:.0f}% "
              f"of all layers, CPU {quarter[1] / into_single[1] * 100:.0f}% (Swift, layers 12..<24: "
              f"{swift_quarter[0] / swift_single[0] * 100:.0f}%, CPU {swift_quarter[1] / swift_single[1] * 100:.0f}%; "
              f"no vector kernels {plain_quarter[0] / plain_single[0] * 100:.0f}%)")
        del out, quarter_out
    for file in work.iterdir():
        file.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()

"""Episode store throughput and memory: B16 x T64 random windows through make_loader.

Builds (once, then reused) a 1M-frame 64x64 store of synthetic episodes (1000 x 1000 steps, ~12 GB)
and one 10x smaller, then for 0, 1 and 2 loader workers measures windows/s and the peak memory of
the measuring process and its workers. Each measurement runs in a fresh process so one does not
inherit another's memory. Memory is reported two ways: RSS (includes pages of memory-mapped episode
files, which the kernel can drop at any time) and private (RSS minus shared/file-backed pages: what
the loader itself holds). Neither should grow with the store.

    python benchmarks/bench_store.py                 # full size (12 GB of disk, minutes to build)
    python benchmarks/bench_store.py --quick         # tiny store, proves the script runs

Writes a markdown table to stdout and benchmarks/results/store.md, JSON (with the CPU model) to store.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from report import run_meta, write_results  # noqa: E402

BATCH, LENGTH, SIZE = 16, 64, 64


def build(root: Path, episodes: int, length: int) -> dict:
    """Create (or finish) a store of ``episodes`` synthetic episodes of ``length`` steps."""
    from wmlab.data import EpisodeStore, make_flags

    store = EpisodeStore(root, "a")
    if len(store) >= episodes:
        return {"built_s": 0.0, "episodes": len(store), "steps": store.num_steps}
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (length, SIZE, SIZE, 3), dtype=np.uint8)  # varied per episode by XOR
    start = time.perf_counter()
    for i in range(len(store), episodes):
        ep = {
            "image": base ^ np.uint8(i % 256),
            "action": rng.uniform(-1, 1, (length, 6)).astype(np.float32),
            "reward": rng.standard_normal(length).astype(np.float32),
            **make_flags(length, terminal=False),
        }
        store.add(ep, {"index": i})
        if (i + 1) % 100 == 0:
            print(f"  built {i + 1}/{episodes} episodes of {root}", file=sys.stderr, flush=True)
    return {"built_s": time.perf_counter() - start, "episodes": len(store), "steps": store.num_steps}


def measure(root: str, workers: int, batches: int) -> dict:
    """Windows/s and peak memory of this process plus its loader workers."""
    import psutil

    from wmlab.data import make_loader

    me = psutil.Process()
    peak = {"rss": 0, "private": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss = private = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    mem = proc.memory_info()
                except psutil.Error:
                    continue
                rss += mem.rss
                private += mem.rss - getattr(mem, "shared", 0)
            peak["rss"], peak["private"] = max(peak["rss"], rss), max(peak["private"], private)
            stop.wait(0.02)

    baseline = me.memory_info().rss
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    loader = make_loader(root, BATCH, LENGTH, workers=workers, seed=0, refresh_s=60)
    it = iter(loader)
    for _ in range(3):  # warm-up: workers start, first maps open
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        batch = next(it)
    elapsed = time.perf_counter() - start
    stop.set()
    sampler.join()
    assert batch["image"].shape == (BATCH, LENGTH, SIZE, SIZE, 3)
    del it
    return {
        "workers": workers,
        "batches": batches,
        "windows_per_s": batches * BATCH / elapsed,
        "mb_per_s": batches * sum(v.numel() * v.element_size() for v in batch.values()) / elapsed / 2**20,
        "baseline_rss_mb": baseline / 2**20,
        "peak_rss_mb": peak["rss"] / 2**20,
        "peak_private_mb": peak["private"] / 2**20,
    }


def run_measure(root: Path, workers: int, batches: int) -> dict:
    cmd = [sys.executable, __file__, "--measure", str(root), str(workers), str(batches)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="bench_data/store_1m", help="where the big store is built and cached")
    parser.add_argument("--quick", action="store_true", help="tiny stores and few batches: proves the script runs")
    parser.add_argument("--batches", type=int, default=None, help="batches timed per configuration")
    parser.add_argument("--workers", default="0,1,2")
    parser.add_argument("--out", default=None,
                        help="JSON path (default benchmarks/results/store[_quick].json; the .md beside it)")
    parser.add_argument("--measure", nargs=3, metavar=("ROOT", "WORKERS", "BATCHES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out = args.out or str(HERE / "results" / f"store{'_quick' if args.quick else ''}.json")
    if args.measure:
        print(json.dumps(measure(args.measure[0], int(args.measure[1]), int(args.measure[2]))))
        return

    big = Path(args.root if not args.quick or args.root != parser.get_default("root") else "bench_data/store_quick")
    episodes, length = (20, 200) if args.quick else (1000, 1000)
    batches = args.batches or (10 if args.quick else 300)
    stores = [(big, episodes), (big.with_name(big.name + "_small"), episodes // 10)]
    rows = []
    for root, n in stores:
        built = build(root, n, length)
        size_gb = sum(f.stat().st_size for f in root.rglob("*.npy")) / 2**30
        for workers in (int(w) for w in args.workers.split(",")):
            res = run_measure(root, workers, batches)
            rows.append({"store": str(root), "frames": built["steps"], "size_gb": size_gb,
                         "build_s": built["built_s"], **res})
            print(f"  {root} workers={workers}: {res['windows_per_s']:.0f} windows/s", file=sys.stderr, flush=True)

    lines = [f"B{BATCH} x T{LENGTH} windows of {SIZE}x{SIZE} images through make_loader", "",
             "| store | frames | GB | workers | windows/s | MB/s | peak RSS MB | peak private MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {Path(r['store']).name} | {r['frames']:,} | {r['size_gb']:.2f} | {r['workers']} | "
              f"{r['windows_per_s']:.0f} | {r['mb_per_s']:.0f} | {r['peak_rss_mb']:.0f} | {r['peak_private_mb']:.0f} |"
              for r in rows]
    meta = run_meta(args.quick, batch=BATCH, length=LENGTH, image=SIZE, numpy=np.__version__)
    write_results(args.out, "\n".join(lines), meta, rows=rows)


if __name__ == "__main__":
    main()

"""World-model train step: ms/step in fp32 and under bf16 autocast, and achieved FLOP/s.

One step is the full DreamerV3 world-model update (encode, observe, KL, decode, reward/continue heads,
backward, AdamW) on synthetic data: the ``paper`` preset (≈15.7M parameters), a batch of 16 windows of
64 steps of 64×64 frames with 6-d actions. FLOPs of one step are counted with
``torch.utils.flop_counter.FlopCounterMode``; achieved FLOP/s is reported as a fraction of the matmul
peak measured in the same run (a large square matmul in each dtype), so machines compare fairly.

    python benchmarks/bench_world_model.py            # full size (about a minute on 2 CPU cores)
    python benchmarks/bench_world_model.py --quick    # tiny batch and one step: proves the script runs

Writes a markdown table to stdout and to benchmarks/results/world_model.md, JSON to world_model.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from report import cpu_name, run_meta, write_results  # noqa: E402

MODES = {"fp32": None, "bf16": torch.bfloat16}


def add_modes_argument(parser: argparse.ArgumentParser) -> None:
    """``--modes``: the precisions a benchmark times, and ``--system-malloc`` (every script here takes them)."""
    parser.add_argument("--modes", default=",".join(MODES),
                        help="precisions to time, comma-separated (fp32 first; on CPUs without AVX-512 BF16 or AMX "
                             "bf16 is emulated and 10-20x slower)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc malloc as it is (trainer.reuse_memory=false); by default freed memory is "
                             "kept for reuse, as the trainer does on CPU")


def apply_memory(args: argparse.Namespace) -> str:
    """Set up host memory as the trainer would (unless ``--system-malloc``); returns a label for the tables."""
    if getattr(args, "system_malloc", False):
        return "system malloc"
    from wmlab.train.memory import keep_freed_memory

    return "freed memory reused" if keep_freed_memory() else "system malloc (no glibc)"


def selected_modes(parser: argparse.ArgumentParser, text: str) -> dict[str, torch.dtype | None]:
    """``{name: autocast dtype or None}`` of ``--modes``; an unknown name is a usage error."""
    names = [m for m in text.split(",") if m]
    unknown = sorted(set(names) - set(MODES))
    if unknown or not names:
        parser.error(f"--modes: unknown precision {', '.join(unknown) or '(none)'}; use {', '.join(MODES)}")
    return {name: MODES[name] for name in names}


def add_run_arguments(parser: argparse.ArgumentParser, name: str, device: bool = True) -> None:
    """``--device`` (unless ``device=False``), ``--modes``, ``--system-malloc`` and ``--out``, whose default is
    ``benchmarks/results/<name>[_quick].json``; :func:`parse_run_arguments` reads them back."""
    if device:
        parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    add_modes_argument(parser)
    parser.add_argument("--out", default=None,
                        help=f"JSON path (default benchmarks/results/{name}[_quick].json; the .md beside it)")


def parse_run_arguments(parser: argparse.ArgumentParser,
                        name: str) -> tuple[argparse.Namespace, str, dict[str, torch.dtype | None]]:
    """Parsed arguments with ``out`` filled in (``--quick`` writes ``<name>_quick.json``), the memory label of
    :func:`apply_memory` (which it applies) and the selected precisions."""
    args = parser.parse_args()
    args.out = args.out or str(HERE / "results" / f"{name}{'_quick' if args.quick else ''}.json")
    return args, apply_memory(args), selected_modes(parser, args.modes)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def matmul_peak(n: int, dtype: torch.dtype, reps: int = 3, device: torch.device = torch.device("cpu")) -> float:
    """Best FLOP/s of an ``n×n @ n×n`` matmul in ``dtype``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    a @ b  # warm-up (kernel selection, page faults)
    best = float("inf")
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def synthetic_batch(batch: int, length: int, size: int, action_dim: int, seed: int = 0,
                    device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    is_first = torch.zeros(batch, length, dtype=torch.bool)
    is_first[:, 0] = True
    data = {
        "image": torch.randint(0, 256, (batch, length, size, size, 3), dtype=torch.uint8, generator=g),
        "action": torch.rand(batch, length, action_dim, generator=g) * 2 - 1,
        "reward": torch.randn(batch, length, generator=g),
        "is_first": is_first,
        "is_terminal": torch.zeros(batch, length, dtype=torch.bool),
    }
    return {k: v.to(device) for k, v in data.items()}


def make_step(model: torch.nn.Module, opt: torch.optim.Optimizer, batch: dict[str, torch.Tensor],
              dtype: torch.dtype | None) -> Any:
    def step() -> float:
        device_type = batch["image"].device.type
        with torch.autocast(device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss, _ = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def count_flops(step: Any) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="batch 2×16 and one timed step: proves the script runs")
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--batch", type=int, default=None, help="windows per batch (default 16; quick 2)")
    parser.add_argument("--length", type=int, default=None, help="steps per window (default 64; quick 16)")
    parser.add_argument("--size", type=int, default=64, help="image side")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per mode (default 5; quick 1)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per mode (default 2; quick 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--matmul", type=int, default=None,
                        help="side of the peak matmul (default 4096; quick 1024)")
    add_run_arguments(parser, "world_model")
    args, memory, modes = parse_run_arguments(parser, "world_model")
    device = torch.device(args.device)

    from wmlab.models import WorldModel, make_config

    quick = args.quick
    batch_size = args.batch or (2 if quick else 16)
    length = args.length or (16 if quick else 64)
    steps = args.steps or (1 if quick else 5)
    warmup = args.warmup if args.warmup is not None else (1 if quick else 2)
    side = args.matmul or (1024 if quick else 4096)
    if args.threads:
        torch.set_num_threads(args.threads)
    peaks = {name: matmul_peak(side, dtype or torch.float32, device=device) for name, dtype in modes.items()}
    torch.manual_seed(0)
    spec = {"image": (args.size, args.size, 3), "action_dim": 6, "action_discrete": False,
            "num_actions": None, "proprio_dim": None}
    model = WorldModel(make_config(args.preset), spec).to(device)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # fused: ~5x faster than foreach on CPU
    batch = synthetic_batch(batch_size, length, args.size, 6, device=device)
    flops = count_flops(make_step(model, opt, batch, None))

    rows = []
    for name, dtype in modes.items():
        step = make_step(model, opt, batch, dtype)
        for _ in range(warmup):
            step()
        times, losses = [], []
        for _ in range(steps):
            start = time.perf_counter()
            losses.append(step())
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        rows.append({"mode": name, "ms_per_step": 1e3 * median, "ms_min": 1e3 * min(times),
                     "ms_all": [1e3 * t for t in times], "tflops": flops / median / 1e12,
                     "peak_tflops": peaks[name] / 1e12, "peak_fraction": flops / median / peaks[name],
                     "loss": losses[-1]})
        print(f"  {name}: {1e3 * median:.0f} ms/step", file=sys.stderr, flush=True)
    times = {r["mode"]: r["ms_per_step"] for r in rows}
    speedup = times["fp32"] / times["bf16"] if {"fp32", "bf16"} <= set(times) else None

    lines = [
        f"World-model train step, preset `{args.preset}` ({params / 1e6:.2f}M params), "
        f"batch {batch_size}×{length}, {args.size}×{args.size} images, "
        + (f"{torch.get_num_threads()} threads, " if device.type == "cpu" else "")
        + f"{device_name(device)}, {memory}",
        "",
        f"FLOPs per step (fwd+bwd): {flops / 1e9:.1f} GFLOP"
        + (f"; bf16 speed-up over fp32: **{speedup:.2f}×**" if speedup is not None else ""),
        "",
        "| mode | ms/step (median) | ms/step (min) | achieved TFLOP/s | matmul peak TFLOP/s | fraction of peak |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['ms_per_step']:.0f} | {r['ms_min']:.0f} | {r['tflops']:.3f} | "
                     f"{r['peak_tflops']:.3f} | {100 * r['peak_fraction']:.1f}% |")
    meta = run_meta(quick, preset=args.preset, params=params, batch=batch_size, length=length, image=args.size,
                    steps=steps, warmup=warmup, device=device_name(device), matmul_side=side, memory=memory)
    write_results(args.out, "\n".join(lines), meta, flops_per_step=flops, bf16_speedup=speedup, rows=rows)


if __name__ == "__main__":
    main()

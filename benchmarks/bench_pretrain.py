"""Video-pretraining throughput: frames per second of one pretraining update per method, fp32 and bf16.

Each method's pretraining world model (``wmlab.jobs.methods``: action-free RSSM for plain/APV, the
contextualised decoder for ContextWM, latent actions for PreLAR) at the ``dreamerv2`` size the seeds
fine-tune with, on random 64×64 frames, batch 16 × 50 (APV's). One update = loss, backward, fused AdamW.

    python benchmarks/bench_pretrain.py                 # every method, fp32 and bf16 (a few minutes)
    python benchmarks/bench_pretrain.py --quick         # tiny batch: proves the script runs

Writes markdown to stdout and benchmarks/results/pretrain.md, JSON to pretrain.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_world_model import add_run_arguments, device_name, parse_run_arguments, sync  # noqa: E402
from report import run_meta, write_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--preset", default="dreamerv2")
    parser.add_argument("--methods", default="apv,contextwm,prelar")
    parser.add_argument("--steps", type=int, default=None)
    add_run_arguments(parser, "pretrain")
    args, memory, modes = parse_run_arguments(parser, "pretrain")
    device = torch.device(args.device)

    from wmlab import config as C
    from wmlab.jobs.methods import phase
    from wmlab.jobs.pretrain import PRESETS, PretrainJobConfig
    from wmlab.models import WorldModel

    b, t = (2, 8) if args.quick else (16, 50)
    steps = args.steps or (1 if args.quick else 3)
    spec = {"image": (64, 64, 3), "action_dim": None, "action_discrete": False, "num_actions": None,
            "proprio_dim": None}
    g = torch.Generator().manual_seed(0)
    is_first = torch.zeros(b, t, dtype=torch.bool)
    is_first[:, 0] = True
    batch = {"image": torch.randint(0, 256, (b, t, 64, 64, 3), dtype=torch.uint8, generator=g).to(device),
             "is_first": is_first.to(device)}
    methods = phase("pretrain")
    rows = []
    for method in args.methods.split(","):
        cfg = C.apply(C.resolve(PretrainJobConfig(), PRESETS, args.preset, {}), C.flatten(methods[method]))
        torch.manual_seed(0)
        model = WorldModel(cfg.model, spec).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
        params = sum(p.numel() for p in model.parameters())
        for mode, dtype in modes.items():
            def step() -> None:
                with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                    loss, _ = model.loss(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            step()  # warm-up
            times = []
            for _ in range(steps):
                sync(device)
                t0 = time.perf_counter()
                step()
                sync(device)
                times.append(time.perf_counter() - t0)
            sec = statistics.median(times)
            rows.append({"method": method, "mode": mode, "params": params, "s_per_step": sec,
                         "frames_per_s": b * t / sec})
            print(f"  {method} {mode}: {b * t / sec:.0f} frames/s", file=sys.stderr, flush=True)
    lines = [f"Pretraining update, preset `{args.preset}`, batch {b}×{t} of 64×64 frames, "
             f"{torch.get_num_threads()} threads, {device_name(device)}, {memory}",
             "", "| method | params | precision | s/update | frames/s |", "|---|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['params'] / 1e6:.2f}M | {r['mode']} | {r['s_per_step']:.2f} | "
                     f"{r['frames_per_s']:.0f} |")
    meta = run_meta(args.quick, preset=args.preset, batch=b, length=t, device=device_name(device), memory=memory)
    write_results(args.out, "\n".join(lines), meta, rows=rows)


if __name__ == "__main__":
    main()

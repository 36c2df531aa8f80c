"""Genie speed: training throughput of each stage (fp32 and bf16) and interactive generation frames/s.

Models are the ``wmlab train genie`` presets on 64×64 frames with CoinRun's 15 actions (random weights: speed
does not depend on them). Training: one update = loss, backward, fused AdamW on a batch of B clips × T frames.
Generation: the frame-by-frame stream that ``wmlab play`` runs (one MaskGIT fill of a frame with cached
attention over the past frames, then the tokenizer decodes it), for several MaskGIT step counts.

    python benchmarks/bench_genie.py                    # tiny and small presets (a few minutes)
    python benchmarks/bench_genie.py --quick            # proves the script runs
    python benchmarks/bench_genie.py --presets small --repeats 1 --frames 5   # add one preset's rows

Rows of presets not measured in this run are kept from an existing output file, so presets can be measured
one at a time.

Writes markdown to stdout and benchmarks/results/genie.md, JSON to genie.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_world_model import (  # noqa: E402
    add_run_arguments,
    make_step,
    parse_run_arguments,
)
from report import cpu_name, run_meta, write_results  # noqa: E402

SPEC = {"image": (64, 64, 3), "action_discrete": True, "num_actions": 15}


def build(preset: str, guided: bool = False) -> tuple[object, object]:
    from wmlab import config as C
    from wmlab.jobs.genie import PRESETS, GenieJobConfig
    from wmlab.models.genie import Genie

    cfg = C.resolve(GenieJobConfig(), PRESETS, preset, {})
    model_cfg = C.apply(cfg.model, {"guided": guided})
    torch.manual_seed(0)
    return Genie(model_cfg, SPEC), cfg


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--presets", default="tiny,small")
    parser.add_argument("--gen-steps", default="25,8,4")
    parser.add_argument("--repeats", type=int, default=3, help="timed updates per stage and precision")
    parser.add_argument("--frames", type=int, default=20, help="timed frames per play setting")
    add_run_arguments(parser, "genie", device=False)
    args, memory, modes = parse_run_arguments(parser, "genie")
    from wmlab.models.genie import GenieStream, count_parameters

    presets = ["debug"] if args.quick else args.presets.split(",")
    repeats = 1 if args.quick else args.repeats
    train_rows, gen_rows, sizes = [], [], []
    for preset in presets + ([] if args.quick else ["paper"]):
        model, cfg = build(preset)
        sizes.append({"preset": preset, **{part: count_parameters(m) for part, m in model.parts().items()}})
    for preset in presets:
        model, cfg = build(preset)
        b, t = (2, 4) if args.quick else (cfg.batch_size, cfg.model.max_frames)
        g = torch.Generator().manual_seed(0)
        batch = {"image": torch.randint(0, 256, (b, t, 64, 64, 3), dtype=torch.uint8, generator=g),
                 "action": torch.randint(0, 15, (b, t), generator=g)}
        for stage in ("tokenizer", "lam", "dynamics"):
            model.set_stage(stage)
            model.train()
            opt = torch.optim.AdamW([p for p in model.parts()[stage].parameters()], lr=1e-4, fused=True)
            for mode, dtype in modes.items():
                sec = timed(make_step(model, opt, batch, dtype), repeats)
                train_rows.append({"preset": preset, "stage": stage, "mode": mode, "batch": b, "length": t,
                                   "s_per_step": sec, "frames_per_s": b * t / sec})
                print(f"  {preset} {stage} {mode}: {b * t / sec:.0f} frames/s", file=sys.stderr, flush=True)
        model.eval()
        frame = batch["image"][:1, :1]
        for steps in [int(s) for s in args.gen_steps.split(",")]:
            for mode, dtype in modes.items():
                stream = GenieStream(model, steps, 1.0, torch.Generator().manual_seed(0))
                n = 3 if args.quick else args.frames
                with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                    stream.start(frame, torch.zeros(1, 0, dtype=torch.long))
                    stream.step(torch.tensor([1]))  # warm-up
                    t0 = time.perf_counter()
                    for i in range(n):
                        stream.step(torch.tensor([i % model.num_actions]))
                    sec = (time.perf_counter() - t0) / n
                gen_rows.append({"preset": preset, "maskgit_steps": steps, "mode": mode, "s_per_frame": sec,
                                 "frames_per_s": 1 / sec})
                print(f"  {preset} play steps={steps} {mode}: {1 / sec:.1f} frames/s", file=sys.stderr, flush=True)
    out = Path(args.out)
    if out.exists() and not args.quick:  # keep the other presets' rows from earlier runs
        old = json.loads(out.read_text())
        measured = set(presets)
        train_rows = [r for r in old.get("train", []) if r["preset"] not in measured] + train_rows
        gen_rows = [r for r in old.get("generate", []) if r["preset"] not in measured] + gen_rows
        known = {s["preset"] for s in sizes}
        sizes = [s for s in old.get("sizes", []) if s["preset"] not in known] + sizes
    order = {name: i for i, name in enumerate(["debug", "tiny", "small", "paper"])}
    for rows in (train_rows, gen_rows, sizes):
        rows.sort(key=lambda r: order.get(r["preset"], len(order)))
    head = f"{torch.get_num_threads()} threads, {cpu_name()}, {memory}, torch {torch.__version__}"
    lines = [f"Genie on 64×64 frames, {head}", "",
             "| preset | tokenizer | latent actions | dynamics |", "|---|---:|---:|---:|"]
    for s in sizes:
        lines.append(f"| {s['preset']} | {s['tokenizer'] / 1e6:.2f}M | {s['lam'] / 1e6:.2f}M | "
                     f"{s['dynamics'] / 1e6:.2f}M |")
    lines += ["", "Training throughput (one update: loss, backward, AdamW)", "",
              "| preset | stage | batch | precision | s/update | frames/s |", "|---|---|---|---|---:|---:|"]
    for r in train_rows:
        lines.append(f"| {r['preset']} | {r['stage']} | {r['batch']}×{r['length']} | {r['mode']} | "
                     f"{r['s_per_step']:.3f} | {r['frames_per_s']:.0f} |")
    lines += ["", "Interactive generation (one frame: MaskGIT fill with cached attention + tokenizer decode)", "",
              "| preset | MaskGIT steps | precision | ms/frame | frames/s |", "|---|---:|---|---:|---:|"]
    for r in gen_rows:
        lines.append(f"| {r['preset']} | {r['maskgit_steps']} | {r['mode']} | {1000 * r['s_per_frame']:.1f} | "
                     f"{r['frames_per_s']:.1f} |")
    write_results(out, "\n".join(lines), run_meta(args.quick, memory=memory), sizes=sizes, train=train_rows,
                  generate=gen_rows)


if __name__ == "__main__":
    main()

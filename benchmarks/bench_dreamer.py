"""Dreamer full train step (world model + actor-critic in imagination): ms/step per size, precision and
``torch.compile``, and imagined latent steps per second.

The batch is random DMC-vision data: 16 windows × 64 steps of 64×64 frames, 6-d actions (walker). One
step is what the trainer does per update: ``agent.loss`` (world-model loss, imagination of 15 steps from
all 1024 posterior states, actor and critic losses), backward, per-group clipping, fused AdamW and the
slow-critic update.

    python benchmarks/bench_dreamer.py                    # small and paper, fp32 and bf16 (minutes)
    python benchmarks/bench_dreamer.py --compile          # add torch.compile rows (adds compile time)
    python benchmarks/bench_dreamer.py --quick            # tiny batch, one step: proves the script runs

``--methods`` times the fine-tuning agent of each video-pretraining method (``wmlab.jobs.methods``) with random
weights, and an entry ``method+key=value+...`` adds agent settings to one of them; ``--set`` adds settings to
every agent (e.g. the sizes the video-pretraining benchmark narrows the world model to). The variants of a
preset take their timed steps in turn, one each per round, so a load on a shared host falls on all of them alike:

    python benchmarks/bench_dreamer.py --presets dreamerv2_metaworld --modes fp32 --length 32 \
        --methods none,prelar,prelar+world_model.latent_action.freeze=true --set world_model.rssm.deter=200

Writes markdown to stdout and benchmarks/results/dreamer.md, JSON to dreamer.json.
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
from bench_world_model import (  # noqa: E402
    add_run_arguments,
    device_name,
    parse_run_arguments,
    synthetic_batch,
    sync,
)
from report import run_meta, write_results  # noqa: E402


def parse_method(entry: str) -> tuple[str, dict[str, str]]:
    """``method[+key=value...]`` → the method name and its extra agent settings."""
    from wmlab import config as C

    method, *extra = entry.split("+")
    try:
        return method, C.parse_overrides(extra)
    except C.ConfigError as e:
        raise SystemExit(f"--methods entry {entry!r}: {e} (write method+key=value+...)") from None


def build(preset: str, size: int, device: torch.device, method: str = "none",
          overrides: dict[str, str] | None = None) -> Any:
    from wmlab import config as C
    from wmlab.agents import PRESETS, AgentConfig, DreamerAgent
    from wmlab.jobs.methods import phase

    cfg = C.resolve(AgentConfig(), PRESETS, preset, {})
    if method != "none":
        methods = phase("finetune")
        if method not in methods:
            raise SystemExit(f"--methods: unknown method {method!r}; choose none or one of {', '.join(methods)}")
        cfg = C.apply(cfg, C.flatten(methods[method].get("agent", {})))
    cfg = C.apply(cfg, overrides or {})
    spec = {"image": (size, size, 3), "action_dim": 6, "action_discrete": False, "num_actions": None,
            "proprio_dim": None, "keys": ["image", "action", "reward", "is_first", "is_terminal"]}
    torch.manual_seed(0)
    agent = DreamerAgent(cfg, spec).to(device)
    opt = torch.optim.AdamW(agent.optimizer_groups(), lr=1e-4, fused=True)
    return agent, opt


def make_step(agent: Any, opt: Any, batch: dict, dtype: torch.dtype | None, compiled: bool) -> Any:
    loss_fn = torch.compile(agent.loss) if compiled else agent.loss

    def step() -> float:
        with torch.autocast(batch["image"].device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss, _ = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in opt.param_groups:
            torch.nn.utils.clip_grad_norm_(group["params"], group["clip"])
        opt.step()
        agent.after_update()
        return float(loss.detach())

    return step


def split_times(agent: Any, batch: dict, dtype: torch.dtype | None) -> dict[str, float]:
    """Seconds of the world-model part and the actor-critic part of one forward+backward, measured apart."""
    device = batch["image"].device
    with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        sync(device)
        t0 = time.perf_counter()
        wm_loss, _, post = agent.wm.loss_and_states(batch)
        wm_loss.backward()
        sync(device)
        t1 = time.perf_counter()
        start = post.detach().flatten()
        cont0 = torch.ones(start.deter.shape[0], device=device)
        from wmlab.agents.dreamer import REWARDS

        fn = REWARDS.get("task")
        ac_loss, _ = agent.task.loss(agent.wm, start, cont0, lambda f, a: fn(agent, f, a), agent.encode_action)
        ac_loss.backward()
        sync(device)
        t2 = time.perf_counter()
    agent.zero_grad(set_to_none=True)
    return {"world_model_s": t1 - t0, "actor_critic_s": t2 - t1}


def imagine_rate(agent: Any, starts: int, dtype: torch.dtype | None, device: torch.device, reps: int = 3) -> float:
    """Imagined latent states per second (policy + prior step), no gradient."""
    start = agent.wm.rssm.initial(starts)
    best = float("inf")
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        agent.task.imagine(agent.wm, start, agent.encode_action)
        for _ in range(reps):
            sync(device)
            t0 = time.perf_counter()
            agent.task.imagine(agent.wm, start, agent.encode_action)
            sync(device)
            best = min(best, time.perf_counter() - t0)
    return starts * agent.cfg.behavior.horizon / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--presets", default="small,paper")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd steps")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--length", type=int, default=None, help="steps per window (default 64; --quick 8)")
    parser.add_argument("--methods", default="none",
                        help="fine-tuning agents to time: none (plain Dreamer) or video-pretraining methods, each "
                             "optionally method+key=value+... (comma-separated)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="agent setting applied to every timed agent (repeatable)")
    add_run_arguments(parser, "dreamer")
    args, memory, modes = parse_run_arguments(parser, "dreamer")
    device = torch.device(args.device)
    quick = args.quick
    b, t = (2, 8) if quick else (16, 64)
    t = args.length or t
    from wmlab import config as C

    common = C.parse_overrides(args.set)
    variants = [(entry, *parse_method(entry)) for entry in args.methods.split(",")]
    steps = args.steps or (1 if quick else 3)
    warmup = args.warmup if args.warmup is not None else (1 if quick else 1)
    batch = synthetic_batch(b, t, 64, 6, device=device)
    batch["reward"] = batch["reward"].abs()
    rows = []
    for preset in args.presets.split(","):
        built = []  # every variant of a preset is timed in turn, step by step: they share whatever load the host has
        for label, method, extra in variants:
            agent, opt = build(preset, 64, device, method, {**common, **extra})
            params = {"world_model": sum(p.numel() for p in agent.wm.parameters()),
                      "actor_critic": sum(p.numel() for p in agent.task.parameters() if p.requires_grad)}
            built.append((label, agent, opt, params))
        for mode, dtype in modes.items():
            for compiled in ([False, True] if args.compile else [False]):
                fns = [make_step(agent, opt, batch, dtype, compiled) for _, agent, opt, _ in built]
                first = []
                for step in fns:
                    t0 = time.perf_counter()
                    for _ in range(warmup):
                        step()
                    first.append(time.perf_counter() - t0)
                times: list[list[float]] = [[] for _ in fns]
                for _ in range(steps):
                    for i, step in enumerate(fns):
                        t0 = time.perf_counter()
                        step()
                        times[i].append(time.perf_counter() - t0)
                for (label, agent, _, params), ts, warm in zip(built, times, first):
                    split = split_times(agent, batch, dtype)
                    rate = imagine_rate(agent, b * t, dtype, device)
                    row = {"preset": preset, "method": label, "mode": mode, "compile": compiled,
                           "ms_per_step": 1e3 * statistics.median(ts), "ms_min": 1e3 * min(ts), "warmup_s": warm,
                           "wm_ms": 1e3 * split["world_model_s"], "ac_ms": 1e3 * split["actor_critic_s"],
                           "imagined_steps_per_s": rate, **params}
                    rows.append(row)
                    print(f"  {preset} {label} {mode}{' compile' if compiled else ''}: {row['ms_per_step']:.0f} "
                          f"ms/step (wm {row['wm_ms']:.0f} + ac {row['ac_ms']:.0f}), {rate:.0f} imagined steps/s",
                          file=sys.stderr, flush=True)
    threads = f"{torch.get_num_threads()} threads, " if device.type == "cpu" else ""
    settings = f", settings {' '.join(args.set)}" if args.set else ""
    lines = [f"Dreamer full train step, batch {b}×{t}, 64×64, horizon 15, {threads}{device_name(device)}, {memory}"
             f"{settings}", "",
             "| preset | method | params (WM / AC) | precision | compile | ms/step | world model ms | "
             "actor-critic ms | imagined steps/s |", "|---|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['method']} | "
                     f"{r['world_model'] / 1e6:.2f}M / {r['actor_critic'] / 1e6:.2f}M | {r['mode']} | "
                     f"{'yes' if r['compile'] else 'no'} | {r['ms_per_step']:.0f} | {r['wm_ms']:.0f} | "
                     f"{r['ac_ms']:.0f} | {r['imagined_steps_per_s']:.0f} |")
    meta = run_meta(quick, batch=b, length=t, steps=steps, device=device_name(device), memory=memory,
                    settings=args.set)
    write_results(args.out, "\n".join(lines), meta, rows=rows)


if __name__ == "__main__":
    main()

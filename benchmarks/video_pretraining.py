"""Video pretraining vs DreamerV2 from scratch on a Meta-World task, at a scale a 2-core CPU runs.

The seeds' headline experiment, end to end through the command line:

1. ``wmlab collect`` records scripted-expert rollouts of *other* Meta-World tasks (``--sources``); only their
   frames are used: pretraining reads them as action-free video.
2. ``wmlab train pretrain method=<m>`` pretrains each method's world model on those videos.
3. ``wmlab train dreamer`` fine-tunes on ``--task`` from scratch (DreamerV2) and from each pretrained run
   (``method=<m> init=<run>``), one run folder per method and seed, evaluating the success rate over
   ``--eval-episodes`` episodes every ``--eval-every`` env steps.
4. ``wmlab compare`` averages the seeds: success and return curves (png + csv), the final table in markdown.

Every run uses the same CPU-sized DreamerV2 (``preset=dreamerv2_metaworld`` with the widths below): the
methods differ only by their config. Run folders live under ``--work``; a re-run resumes what exists (collection
skips the episodes the store holds, finished runs return at once), so methods and seeds can be added later.
The time spent on each step accumulates across re-runs in ``<work>/timings.json``; a pretraining run already
finished when the script starts (one of an earlier invocation, or a link to another work folder's) is not run
again, and the result json lists it under ``reused`` instead of timing it.

    python benchmarks/video_pretraining.py                       # reach, apv vs scratch, 2 seeds (≈1 h)
    python benchmarks/video_pretraining.py --methods apv,prelar --seeds 0,1,2
    python benchmarks/video_pretraining.py --quick               # tiny sizes: proves the pipeline runs
    python benchmarks/video_pretraining.py --methods prelar --no-scratch --name video_pretraining_prelar
    python benchmarks/video_pretraining.py --methods apv --no-scratch --set agent.intrinsic=none --tag nobonus
    python benchmarks/video_pretraining.py --methods prelar --pretrain-only   # then seeds in parallel, see --work

Writes ``benchmarks/results/video_pretraining.{md,json}`` and the success/return plots beside them
(``--quick``: ``video_pretraining_quick.*``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from report import cpu_name  # noqa: E402

# The world model and actor-critic of DreamerV2's Meta-World runs, narrowed to what 2 CPU cores train in
# minutes: widths here, everything else from preset=dreamerv2_metaworld. Shared by pretraining (model.*) and
# fine-tuning (agent.world_model.*), so the pretrained weights fit the fine-tuned model.
CPU_WORLD_MODEL = {"rssm.deter": 200, "rssm.hidden": 200, "rssm.stoch": 16, "rssm.classes": 16,
                   "cnn.depth": 16, "heads.layers": 2, "heads.units": 256}
CPU_BEHAVIOR = {"actor.layers": 2, "actor.units": 256, "critic.layers": 2, "critic.units": 256}
QUICK_WORLD_MODEL = {"rssm.deter": 32, "rssm.hidden": 32, "rssm.stoch": 4, "rssm.classes": 4,
                     "cnn.depth": 4, "heads.layers": 1, "heads.units": 32}
QUICK_BEHAVIOR = {"actor.layers": 1, "actor.units": 32, "critic.layers": 1, "critic.units": 32, "horizon": 5}


def wmlab(*args: str, log: Path) -> None:
    """Run ``wmlab <args>`` in this interpreter's environment; its output goes to ``log``."""
    cmd = [sys.executable, "-m", "wmlab.cli", *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    print("$ wmlab " + " ".join(args), flush=True)
    t0 = time.perf_counter()
    with open(log, "a") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise SystemExit(f"wmlab {args[0]} failed (exit {rc}); last lines of {log}:\n{tail}")
    print(f"  {time.perf_counter() - t0:.0f} s", flush=True)


def kv(prefix: str, values: dict[str, Any]) -> list[str]:
    return [f"{prefix}{k}={v}" for k, v in values.items()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="reach", help="Meta-World task to fine-tune on")
    p.add_argument("--sources", default="door-open,drawer-open,button-press-topdown,window-open",
                   help="Meta-World tasks whose expert rollouts are the pretraining videos")
    p.add_argument("--methods", default="apv", help="pretraining methods compared with scratch")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--video-episodes", type=int, default=8, help="expert episodes per source task")
    p.add_argument("--episode-steps", type=int, default=150, help="agent steps per episode (videos and task)")
    p.add_argument("--pretrain-steps", type=int, default=1500, help="pretraining updates")
    p.add_argument("--env-steps", type=int, default=6000, help="fine-tuning env steps per run")
    p.add_argument("--prefill", type=int, default=1000)
    p.add_argument("--train-ratio", type=float, default=96.0)
    p.add_argument("--eval-every", type=int, default=1500)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=32)
    p.add_argument("--work", default="runs/video_pretraining", help="folder of the store and run folders")
    p.add_argument("--quick", action="store_true", help="tiny sizes and budgets: proves the pipeline runs")
    p.add_argument("--no-scratch", action="store_true",
                   help="skip DreamerV2 from scratch (to add a method to a comparison that already has it)")
    p.add_argument("--pretrain-only", action="store_true",
                   help="collect and pretrain, then stop: fine-tuning seeds can then run in parallel, one "
                        "invocation each (with its own --work linking this one's videos and pretrain_<method>)")
    p.add_argument("--name", default=None, help="stem of the result files (default video_pretraining[_quick])")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                   help="extra setting of the pretrained methods' fine-tuning runs (repeatable), e.g. "
                        "agent.intrinsic_scale=0.2; needs --tag")
    p.add_argument("--tag", default="", help="names the --set variant: its runs are <task>_<method>-<tag>_s<seed>")
    p.add_argument("--out", default=str(HERE / "results"), help="folder for the results")
    args = p.parse_args()
    if args.settings and not args.tag:
        p.error("--set changes the fine-tuning runs: give --tag too, so they are not taken for the plain method's")
    bad = [kv for kv in args.settings if "=" not in kv]
    if bad:
        p.error(f"--set takes KEY=VALUE, got {bad[0]!r}")
    if args.pretrain_only and not any(args.methods.split(",")):
        p.error("--pretrain-only with no --methods: nothing to pretrain")
    if "_" in args.tag:
        p.error(f"--tag {args.tag!r}: no '_' (run names are <task>_<method>-<tag>_s<seed>)")
    wm, beh = CPU_WORLD_MODEL, CPU_BEHAVIOR
    if args.quick:
        wm, beh = QUICK_WORLD_MODEL, QUICK_BEHAVIOR
        args.video_episodes, args.episode_steps, args.pretrain_steps = 1, 20, 4
        args.env_steps, args.prefill, args.train_ratio, args.eval_every, args.eval_episodes = 60, 30, 32.0, 30, 1
        args.batch, args.length = 2, 8
    work = Path(args.work)
    logs = work / "logs"
    shape = [f"batch_size={args.batch}", f"length={args.length}", "preset=dreamerv2_metaworld",
             "trainer.progress=false", "trainer.tensorboard=false"]
    timings_file = work / "timings.json"
    timings: dict[str, float] = json.loads(timings_file.read_text()) if timings_file.exists() else {}

    def timed(key: str, *cmd: str, log: Path) -> None:
        """``wmlab(*cmd)``, adding its wall time to ``timings[key]`` (a resumed step adds only what it ran)."""
        t0 = time.perf_counter()
        wmlab(*cmd, log=log)
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
        timings_file.write_text(json.dumps(timings, indent=2) + "\n")

    videos = work / "videos"
    for i, task in enumerate(args.sources.split(",")):
        timed("collect_s", "collect", f"env=metaworld:{task}", f"episodes={args.video_episodes}", "policy=expert",
              "expert_noise=0.1", f"max_steps={args.episode_steps}", f"seed={1000 * i}", "workers=2",
              "progress=false", f"out={videos}", log=logs / "collect.log")

    runs: list[Path] = []
    methods = [m for m in args.methods.split(",") if m]
    from wmlab.train.checkpoint import step_dir_name

    reused = []  # pretraining runs finished before this invocation (e.g. linked from another work folder)
    for method in methods:
        pre = work / f"pretrain_{method}"
        if (pre / "checkpoints" / step_dir_name(args.pretrain_steps)).is_dir():
            reused.append(pre.name)  # its time is in the timings of the invocation that ran it, not counted again
            continue
        timed(f"pretrain_{method}_s", "train", "pretrain", f"method={method}", f"data={videos}", f"run_dir={pre}",
              f"trainer.steps={args.pretrain_steps}", f"trainer.ckpt_every={args.pretrain_steps}",
              "trainer.log_every=50", *shape, *kv("model.", wm), log=logs / f"pretrain_{method}.log")
    if args.pretrain_only:
        print(f"pretrained {', '.join(f'pretrain_{m}' for m in methods)} under {work}", flush=True)
        return
    for seed in args.seeds.split(","):
        for method in ([] if args.no_scratch else ["none"]) + methods:
            label = "scratch" if method == "none" else method + (f"-{args.tag}" if args.tag else "")
            name = f"{args.task}_{label}_s{seed}"
            run = work / name
            init = [] if method == "none" else [f"method={method}", f"init={work / f'pretrain_{method}'}",
                                                *args.settings]
            timed(f"{name}_s", "train", "dreamer", f"env=metaworld:{args.task}", *init, f"run_dir={run}",
                  f"env_steps={args.env_steps}", f"prefill={args.prefill}", f"train_ratio={args.train_ratio}",
                  f"time_limit={args.episode_steps}", f"eval.every={args.eval_every}",
                  f"eval.episodes={args.eval_episodes}", "eval.videos=0", f"ckpt_every={args.env_steps}",
                  f"trainer.seed={seed}", "trainer.log_every=50", *shape, *kv("agent.world_model.", wm),
                  *kv("agent.behavior.", beh), log=logs / f"{name}.log")
            runs.append(run)

    from wmlab.eval.curves import compare, read_curve

    out = Path(args.out)
    stem = args.name or ("video_pretraining_quick" if args.quick else "video_pretraining")
    tables = {}
    for key, suffix in (("eval/success", "success"), ("eval/return_mean", "return")):
        tables[key] = compare(runs, out / f"{stem}_{suffix}.png", key=key,
                              title=f"metaworld:{args.task}: video pretraining vs scratch")["final"]
    # Each run's own curve, so a later stop that adds seeds can pool them with these.
    curves = {run.name: {key: {"env_steps": [int(x) for x in steps], "values": [float(v) for v in values]}
                         for key in tables for steps, values in [read_curve(run, key)]} for run in runs}
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "work", "name")}  # not the paths
    result = {"task": args.task, "sources": args.sources.split(","), "methods": methods,
              "seeds": args.seeds.split(","), "settings": settings,
              "world_model": wm, "behavior": beh, "tables": tables, "runs": curves, "timings_s": timings,
              "total_s": sum(timings.values()), "reused": reused, "machine": cpu_name()}
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"metaworld:{args.task}, {args.env_steps} env steps of fine-tuning, seeds {args.seeds}; "
             f"pretraining: {args.pretrain_steps} updates on expert videos of {args.sources}", "",
             "| setting | runs | success (final, mean ± std) | return (final, mean ± std) |", "|---|---:|---:|---:|"]
    for label, row in tables["eval/success"].items():
        ret = tables["eval/return_mean"][label]
        lines.append(f"| {label} | {row['runs']} | {row['mean']:.2f} ± {row['std']:.2f} | "
                     f"{ret['mean']:.0f} ± {ret['std']:.0f} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Pool the seeds of several ``video_pretraining.py`` comparisons into one table and one success plot.

Methods and seeds are often added at different stops (``--no-scratch --name …``), each writing its own result
json. This reads the per-run curves those jsons keep (``"runs"``), plus optional csv files of runs recorded
earlier (columns ``run,method,seed,env_step,success,return,machine``; ``return`` may be empty, and the final
return is then over the runs that have one), and writes, for every method, the mean ± std over its seeds at
each evaluation step and averaged over the evaluations, and how its runs' averages compare with scratch's (the
probability that one of its runs beats one of scratch's, and a one-sided permutation p-value of the difference),
in success and in return (the steadier signal where few episodes succeed):

    python benchmarks/pool_video_pretraining.py benchmarks/results/video_pretraining_seed2.json \\
        --earlier benchmarks/results/video_pretraining_runs_earlier.csv --out benchmarks/results/video_pretraining_pooled

Writes ``<out>.md`` (the table), ``<out>_success.png`` (curves with ±std bands) and ``<out>_runs.csv`` (every
run's rows, the input of a later pooling). A run found twice (same run name) is an error, not a silent pick, and
so are runs of several tasks (the ``<task>`` of a run named ``<task>_<method>_s<seed>``) unless ``--across`` is
given. ``--across`` pools each task on its own and writes one table across them (``<out>.md``): per task, each
method's runs averaged over the evaluations against that task's scratch runs, in success and in return; then each
method's mean over the tasks it ran against scratch's over the same tasks (the form of APV's and PreLAR's
headline, a mean over tasks), with runs compared and relabelled only within their task
(``wmlab.eval.stats.stratified_*``):

    python benchmarks/pool_video_pretraining.py --across --earlier benchmarks/results/video_pretraining_frozen_pooled_runs.csv \
        benchmarks/results/video_pretraining_{bptw,wc,do_frozen}_pooled_runs.csv --out benchmarks/results/video_pretraining_tasks
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from pathlib import Path

from wmlab.eval.stats import (
    permutation_p_value,
    probability_of_improvement,
    stratified_permutation_p_value,
    stratified_probability_of_improvement,
)

FIELDS = ["run", "method", "seed", "env_step", "success", "return", "machine"]
ORDER = ["scratch", "apv", "prelar", "contextwm"]  # table order; other methods follow by name


RUN_NAME = re.compile(r"(?P<task>.+)_(?P<method>[^_]+)_s(?P<seed>\d+)")


def _float(text: str) -> float:
    return float("nan") if text in ("", None) else float(text)


def rows_from_result(path: Path) -> list[dict]:
    """Per-run rows of one ``video_pretraining.py`` result json."""
    result = json.loads(path.read_text())
    if "runs" not in result:
        raise SystemExit(f"{path} keeps no per-run curves ('runs'); it was written before they were recorded: "
                         "give its runs as an --earlier csv instead")
    rows = []
    for name, curves in result["runs"].items():
        match = RUN_NAME.fullmatch(name)
        if match is None:
            raise SystemExit(f"{path}: run {name!r} is not named <task>_<method>_s<seed>")
        success, ret = curves["eval/success"], curves["eval/return_mean"]
        returns = dict(zip(ret["env_steps"], ret["values"]))
        for step, value in zip(success["env_steps"], success["values"]):
            rows.append({"run": name, "method": match["method"], "seed": int(match["seed"]), "env_step": int(step),
                         "success": float(value), "return": float(returns.get(step, math.nan)),
                         "machine": result.get("machine", "")})
    return rows


def rows_from_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = set(FIELDS) - set(reader.fieldnames or [])
        if missing:
            raise SystemExit(f"{path} lacks the column(s) {', '.join(sorted(missing))}; it needs {','.join(FIELDS)}")
        rows = [{**r, "seed": int(r["seed"]), "env_step": int(r["env_step"]), "success": _float(r["success"]),
                 "return": _float(r["return"])} for r in reader]
    for row in rows:
        if RUN_NAME.fullmatch(row["run"]) is None:
            raise SystemExit(f"{path}: run {row['run']!r} is not named <task>_<method>_s<seed>")
    return rows


def task_of(run: str) -> str:
    return RUN_NAME.fullmatch(run)["task"]


def pool(rows: list[dict]) -> dict[str, dict]:
    """``{method: {"seeds", "steps", "mean", "std", "curves", "return_curves", "return_mean", "return_std",
    "return_runs", "machines"}}`` over the steps all its runs evaluated at (``curves``: each run's success there;
    ``return_curves``: the return of the runs that kept it at every one; ``averages`` reduces either to each
    run's average over the evaluations, a steadier summary than any one evaluation of 10 episodes)."""
    runs: dict[str, dict[str, list[dict]]] = {}
    for row in rows:
        runs.setdefault(row["method"], {}).setdefault(row["run"], []).append(row)
    out = {}
    for method in sorted(runs, key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m)):
        members = runs[method]
        steps = sorted(set.intersection(*({r["env_step"] for r in rs} for rs in members.values())))
        by_step = {name: {r["env_step"]: r for r in rs} for name, rs in members.items()}
        success = [[by_step[name][s]["success"] for name in members] for s in steps]
        curves = [[by_step[name][s]["success"] for s in steps] for name in members]
        return_curves = [curve for curve in ([by_step[name][s]["return"] for s in steps] for name in members)
                         if not any(math.isnan(r) for r in curve)]
        # Runs recorded earlier may lack a return; the final return is over the runs that have one.
        finals = [r for r in (by_step[name][steps[-1]]["return"] for name in members) if not math.isnan(r)]
        out[method] = {
            "seeds": sorted(by_step[name][steps[-1]]["seed"] for name in members), "steps": steps,
            "mean": [sum(v) / len(v) for v in success], "std": [_std(v) for v in success],
            "curves": curves, "return_curves": return_curves,
            "return_mean": sum(finals) / len(finals) if finals else math.nan,
            "return_std": _std(finals) if finals else math.nan, "return_runs": len(finals),
            "machines": sorted({r["machine"] for rs in members.values() for r in rs}),
        }
    return out


def averages(method: dict, steps: set[int], key: str = "curves") -> list[float]:
    """Each run's ``key`` curve (``curves``: success, ``return_curves``: return) averaged over ``steps``."""
    keep = [i for i, s in enumerate(method["steps"]) if s in steps]
    return [sum(curve[i] for i in keep) / len(keep) for curve in method[key]]


def against_scratch(method: dict, scratch: dict, key: str = "curves") -> tuple[float, float] | None:
    """The probability that a run of ``method`` beats one of ``scratch`` and the one-sided permutation p-value,
    each run scored by its ``key`` curve averaged over the evaluations both methods' runs made (``None`` when
    either side has no run with that curve)."""
    steps = set(method["steps"]) & set(scratch["steps"])
    ours, theirs = averages(method, steps, key), averages(scratch, steps, key)
    if not ours or not theirs:
        return None
    return probability_of_improvement(ours, theirs), permutation_p_value(ours, theirs)


def against_cell(method: str, pooled: dict, key: str) -> str:
    if method == "scratch" or "scratch" not in pooled:
        return "–"
    found = against_scratch(pooled[method], pooled["scratch"], key)
    return "–" if found is None else f"{found[0]:.2f}, p = {found[1]:.2f}"


def across_tasks(pooled: dict[str, dict[str, dict]]) -> list[str]:
    """The markdown lines of ``--across``: ``pooled`` maps each task to its :func:`pool`."""
    methods = sorted({m for by_method in pooled.values() for m in by_method},
                     key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m))
    lines = []
    for key, what, digits in (("curves", "Success", 2), ("return_curves", "Return", 0)):
        lines += [f"{what} averaged over each run's evaluations, mean ± std over seeds (seeds; against the task's "
                  "scratch runs: P(a run beats a scratch run), one-sided permutation p):", "",
                  "| task | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
        for task, by_method in pooled.items():
            cells = []
            for method in methods:
                scores = averages(by_method[method], set(by_method[method]["steps"]), key) if method in by_method else []
                if not scores:
                    cells.append("–")
                    continue
                cell = f"{sum(scores) / len(scores):.{digits}f} ± {_std(scores):.{digits}f} ({len(scores)}"
                found = (against_scratch(by_method[method], by_method["scratch"], key)
                         if method != "scratch" and "scratch" in by_method else None)
                cells.append(cell + (f"; {found[0]:.2f}, p {found[1]:.2f})" if found else ")"))
            lines.append(f"| `{task}` | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Mean over the tasks each method ran, against scratch's mean over the same tasks (each task weighs "
              "alike; P counts pairs of runs of the same task, p relabels runs within their task):", "",
              "| method | tasks | success: method / scratch | P, p | return: method / scratch | P, p |",
              "|---|---|---:|---:|---:|---:|"]
    for method in methods:
        if method == "scratch":
            continue
        success, returns = (against_scratch_across(pooled, method, key) for key in ("curves", "return_curves"))
        if success is None:
            lines.append(f"| {method} | – | – | – | – | – |")
            continue
        cells = [", ".join(success[0]), f"{success[1]:.2f} / {success[2]:.2f}", _p_cell(*success[3:])]
        if returns is None:
            cells += ["–", "–"]
        else:
            where = "" if returns[0] == success[0] else f" ({', '.join(returns[0])})"
            cells += [f"{returns[1]:.0f} / {returns[2]:.0f}{where}", _p_cell(*returns[3:])]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def against_scratch_across(pooled: dict[str, dict[str, dict]], method: str, key: str
                           ) -> tuple[list[str], float, float, float, float] | None:
    """``method`` against scratch over the tasks both ran (with ``key`` curves): those tasks, the method's mean
    over them of its task means, scratch's, the stratified P and p (``None`` where no task has both)."""
    strata, tasks = [], []
    for task, by_method in pooled.items():
        if method not in by_method or "scratch" not in by_method:
            continue
        steps = set(by_method[method]["steps"]) & set(by_method["scratch"]["steps"])
        ours, theirs = averages(by_method[method], steps, key), averages(by_method["scratch"], steps, key)
        if ours and theirs:
            strata.append((ours, theirs))
            tasks.append(task)
    if not strata:
        return None
    return (tasks, sum(sum(x) / len(x) for x, _ in strata) / len(strata),
            sum(sum(y) / len(y) for _, y in strata) / len(strata),
            stratified_probability_of_improvement(strata), stratified_permutation_p_value(strata))


def _p_cell(improvement: float, p: float) -> str:
    return f"{improvement:.2f}, p {p:.2f}" if p >= 0.01 else f"{improvement:.2f}, p {p:.3f}"


def _std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))  # population std, as `wmlab compare`


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="*", type=Path, help="result jsons of video_pretraining.py")
    p.add_argument("--earlier", nargs="*", type=Path, default=[], help="csv files of runs recorded earlier")
    p.add_argument("--out", type=Path, required=True, help="stem of the pooled files")
    p.add_argument("--across", action="store_true",
                   help="runs of several tasks: one table across them, with each method's mean over tasks")
    args = p.parse_args()
    sources = {path: rows_from_csv(path) for path in args.earlier}
    sources.update({path: rows_from_result(path) for path in args.results})
    rows = [r for found in sources.values() for r in found]
    if not rows:
        raise SystemExit("nothing to pool: give result jsons and/or --earlier csv files")
    tasks: dict[str, set[str]] = {}
    for path, found in sources.items():
        for row in found:
            tasks.setdefault(task_of(row["run"]), set()).add(path.name)
    if len(tasks) > 1 and not args.across:
        raise SystemExit("runs of several tasks (" + "; ".join(f"{t}: {', '.join(sorted(files))}" for t, files
                         in sorted(tasks.items())) + "): pool one task at a time, or give --across")
    seen: dict[tuple[str, int], int] = {}
    for row in rows:
        seen[(row["run"], row["env_step"])] = seen.get((row["run"], row["env_step"]), 0) + 1
    twice = sorted({run for (run, _), n in seen.items() if n > 1})
    if twice:
        raise SystemExit(f"run(s) {', '.join(twice)} appear in more than one input; give each run once")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.across:
        lines = across_tasks({task: pool([r for r in rows if task_of(r["run"]) == task]) for task in sorted(tasks)})
        args.out.with_name(args.out.name + ".md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return
    task = next(iter(tasks))
    pooled = pool(rows)

    with open(args.out.with_name(args.out.name + "_runs.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for row in sorted(rows, key=lambda r: (r["method"], r["seed"], r["env_step"])):
            writer.writerow({**row, "return": "" if math.isnan(row["return"]) else f"{row['return']:.3f}"})

    steps = " / ".join(f"{s:,}" for s in next(iter(pooled.values()))["steps"])
    lines = [f"metaworld:{task}", "", f"| method | seeds | success at {steps} env steps (mean ± std) | "
             "success averaged over them (mean ± std) | vs scratch: P(run beats a scratch run), p | "
             "final return (mean ± std) | return averaged over the evaluations (mean ± std) | "
             "vs scratch in return: P, p | machines |", "|---|---|---|---:|---:|---:|---:|---:|---|"]
    machines = sorted({name for m in pooled.values() for name in m["machines"]})  # numbered, named below
    for method, m in pooled.items():
        cells = " / ".join(f"{a:.2f} ± {b:.2f}" for a, b in zip(m["mean"], m["std"]))
        where = ", ".join(str(machines.index(name) + 1) for name in m["machines"])
        n, k = len(m["seeds"]), m["return_runs"]
        final = "–" if k == 0 else f"{m['return_mean']:.0f} ± {m['return_std']:.0f}"
        final += f" ({k} of {n} seeds)" if 0 < k < n else ""
        successes = averages(m, set(m["steps"]))
        average = f"{sum(successes) / len(successes):.2f} ± {_std(successes):.2f}"
        returns = averages(m, set(m["steps"]), "return_curves")
        return_average = "–" if not returns else f"{sum(returns) / len(returns):.0f} ± {_std(returns):.0f}"
        return_average += f" ({len(returns)} of {n} seeds)" if 0 < len(returns) < n else ""
        lines.append(f"| {method} | {','.join(map(str, m['seeds']))} | {cells} | {average} | "
                     f"{against_cell(method, pooled, 'curves')} | {final} | {return_average} | "
                     f"{against_cell(method, pooled, 'return_curves')} | {where} |")
    lines += ["", "Machines: " + "; ".join(f"{i + 1}: {name}" for i, name in enumerate(machines)) + "."]
    args.out.with_name(args.out.name + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, m in pooled.items():
        lo = [a - b for a, b in zip(m["mean"], m["std"])]
        hi = [a + b for a, b in zip(m["mean"], m["std"])]
        ax.plot(m["steps"], m["mean"], marker="o", label=f"{method} (n={len(m['seeds'])})")
        ax.fill_between(m["steps"], lo, hi, alpha=0.15)
    ax.set_title(f"metaworld:{task}: video pretraining vs scratch", fontsize=10)
    ax.set_xlabel("env steps of fine-tuning")
    ax.set_ylabel("success rate (10 episodes)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out.with_name(args.out.name + "_success.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()

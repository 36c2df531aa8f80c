"""Learning curves from run folders: score vs env steps, runs of one setting averaged over seeds.

    wmlab compare runs/walker_s0 runs/walker_s1 runs/walker_apv_s0 out=results/walker.png
    wmlab compare runs/* key=eval/success out=results/metaworld.png

Runs are seeds of one setting when their saved configs (``config.yaml``, and the preset in ``run.json``)
agree on everything but seeds and bookkeeping (run folder, logging, checkpoint schedule, run length): each
setting's curve is the mean over its runs at the env steps they all evaluated, with a ±1 std band. A
setting is labelled ``env · method · preset`` plus the settings that tell it apart from the others with
that label (``actor.grad=dynamics``). Writes the plot, ``<out>.csv`` (every point) and returns a table of
final scores.

A published curve can be drawn beside them with ``reference=<scores file>``: a JSON list (optionally gzipped)
of ``{"task", "method", "seed", "xs", "ys"}`` records, the layout of the score files released with DreamerV3
(``scores/dmc_vision-dreamerv3.json.gz``). A record belongs to a run's env when the names agree up to case and
punctuation (``dmc_walker_stand`` is ``dmc:walker_stand``). Evaluation episodes logged a few steps apart
(8002, 8004, … 8016) form one evaluation round: points closer than ``reference_gap`` env steps, by default a
hundredth of the widest gap between the task's points, are pooled; each record's mean over a round is one seed's
score there, and the band is ±1 std over the seeds that reached the round (a round fewer than half the records
reached, one seed's off-schedule evaluation, is left out). Only rounds up to the first one past the runs' last step are
drawn, so a 20k-step run is not squashed under a 1M-step published curve. Return curves also get the random
policy's return (:mod:`wmlab.eval.scores`) as a dotted line where the runs play episodes as it was measured.

    wmlab compare runs/ws_* reference=dmc_vision-dreamerv3.json.gz out=results/walker_stand.png

``baseline=<part of a label>`` compares every other setting's runs with that one's, run by run (:func:`versus`):

    wmlab compare runs/mw_* key=eval/success baseline=scratch out=results/drawer_open.png

With runs of several envs, ``"across_envs"`` also gives each setting's mean over the envs it ran against the
baseline's over the same envs, runs compared and relabelled within their env (:func:`across_envs`).
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from wmlab.config import flatten  # noqa: E402


def read_curve(run_dir: str | Path, key: str = "eval/return_mean") -> tuple[np.ndarray, np.ndarray]:
    """``(env_steps, values)`` of every logged row of ``run_dir/metrics.jsonl`` holding ``key`` and env_step."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; is {run_dir} a dreamer run folder?")
    steps, values = [], []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if key in row and "env_step" in row:
            steps.append(int(row["env_step"]))
            values.append(float(row[key]))
    return np.asarray(steps), np.asarray(values)


# Config keys that do not change what a run learns: runs differing only here are seeds of one setting.
_BOOKKEEPING = ("run_dir", "env_steps", "ckpt_every", "eval.table", "eval.videos", "trainer.steps",
                "trainer.log_every", "trainer.ckpt_every", "trainer.keep_checkpoints", "trainer.progress",
                "trainer.tensorboard", "trainer.wandb", "trainer.wandb_project")


def run_setting(run_dir: str | Path) -> dict[str, Any]:
    """The flattened saved config of a run without seeds and bookkeeping (what makes runs one setting)."""
    run = Path(run_dir)
    cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").exists() else {}
    info = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
    flat = {k: tuple(v) if isinstance(v, list) else v for k, v in flatten(cfg or {}).items()
            if k not in _BOOKKEEPING and k != "seed" and not k.endswith(".seed")}
    flat["preset"] = info.get("preset") or "default"
    flat.setdefault("env", "?")
    flat["method"] = flat.get("method") or "none"
    return flat


def _base_label(setting: dict[str, Any]) -> str:
    """``env · method · preset`` (``scratch`` for no pretraining method)."""
    method = "scratch" if setting["method"] == "none" else setting["method"]
    return " · ".join(str(p) for p in (setting["env"], method, setting["preset"]))


def _short(key: str) -> str:
    """The last two parts of a dotted key (``agent.behavior.actor.grad`` → ``actor.grad``)."""
    return ".".join(key.split(".")[-2:])


def _job_of(run: str | Path) -> str | None:
    path = Path(run) / "run.json"
    return json.loads(path.read_text()).get("job") if path.is_file() else None


def group_runs(runs: Sequence[str | Path]) -> dict[str, list[Path]]:
    """Runs grouped into settings, each labelled ``env · method · preset`` and the keys where settings differ."""
    settings: list[dict[str, Any]] = []
    members: list[list[Path]] = []
    for run in runs:
        s = run_setting(run)
        if s in settings:
            members[settings.index(s)].append(Path(run))
        else:
            settings.append(s)
            members.append([Path(run)])
    # A label names the keys that tell a setting apart from the others with the same env · method · preset;
    # what a method sets (the stacked RSSM, the bonus, its init= run) is already said by its name.
    same_base: dict[str, list[dict[str, Any]]] = {}
    for s in settings:
        same_base.setdefault(_base_label(s), []).append(s)
    groups: dict[str, list[Path]] = {}
    for s, runs_of in zip(settings, members):
        base = _base_label(s)
        peers = same_base[base]
        keys = sorted({k for p in peers for k in p})
        differ = [k for k in keys if len({repr(p.get(k)) for p in peers}) > 1]
        extra = ", ".join(f"{_short(k)}={s.get(k)}" for k in differ)
        groups[f"{base} · {extra}" if extra else base] = runs_of
    return groups


def _task_key(name: str) -> str:
    """``dmc:walker_stand``, ``dmc_walker_stand`` and ``DMC-Walker-Stand`` all give ``dmc_walker_stand``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def read_reference(path: str | Path) -> list[dict[str, Any]]:
    """The records of a published scores file (JSON list, ``.gz`` allowed) with ``task``, ``xs`` and ``ys``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference scores file {path} is missing; pass the path of a scores .json or "
                                ".json.gz file (e.g. DreamerV3's scores/dmc_vision-dreamerv3.json.gz)")
    try:
        with (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)) as f:
            records = json.load(f)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"reference scores file {path} is not readable JSON ({e})") from None
    if not isinstance(records, list) or not all(
            isinstance(r, dict) and {"task", "xs", "ys"} <= r.keys() and len(r["xs"]) == len(r["ys"])
            for r in records):
        raise ValueError(f"reference scores file {path} is not a list of {{task, method, seed, xs, ys}} records "
                         "with as many xs as ys")
    return records


def reference_curves(records: Sequence[dict[str, Any]], env: str, gap: float | None = None
                     ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``{method: (env_steps, mean, std, seeds)}`` of the records of ``env``, pooled per evaluation round.

    Sorted points closer than ``gap`` env steps are one round (default: a hundredth of the widest gap between
    the task's points); a record's mean over a round is one seed's score, and mean/std run over the records
    that reached the round (``seeds``, per round). Rounds fewer than half the records reached are left out.
    """
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if _task_key(str(r["task"])) == _task_key(env) and len(r["xs"]):
            by_method.setdefault(str(r.get("method", "reference")), []).append(r)
    curves = {}
    for method, recs in by_method.items():
        xs = np.unique(np.concatenate([np.asarray(r["xs"], float) for r in recs]))
        gaps = np.diff(xs)
        limit = gap if gap is not None else (gaps.max() / 100 if len(gaps) else 0.0)
        round_of_x = np.concatenate([[0], np.cumsum(gaps > limit)])
        rounds = int(round_of_x[-1]) + 1
        per_seed = np.full((len(recs), rounds), np.nan)
        for i, r in enumerate(recs):
            idx = round_of_x[np.searchsorted(xs, np.asarray(r["xs"], float))]
            ys = np.asarray(r["ys"], float)
            for k in np.unique(idx):
                per_seed[i, k] = ys[idx == k].mean()
        steps = np.asarray([xs[round_of_x == k].mean() for k in range(rounds)])
        seeds = (~np.isnan(per_seed)).sum(0)
        # A round that fewer than half the records reached is one seed's off-schedule evaluation (or the tail
        # of the longest seeds): left out rather than drawn as a spike of one run.
        keep = seeds * 2 >= len(recs)
        mean = np.nanmean(per_seed[:, keep], 0)
        std = np.nanstd(per_seed[:, keep], 0)
        curves[method] = (np.round(steps[keep]).astype(int), mean, std, seeds[keep])
    return curves


def compare(runs: Sequence[str | Path], out: str | Path, key: str = "eval/return_mean",
            title: str | None = None, reference: str | Path | None = None,
            reference_gap: float | None = None, baseline: str | None = None) -> dict[str, Any]:
    """Plot the grouped curves of ``runs`` into ``out`` (png/svg/pdf); returns final mean ± std per group.

    ``reference=`` adds the published curves of the runs' envs from a scores file (see the module doc); the
    result then also holds, per reference curve, its round nearest to the last step the runs of its env reached.
    ``baseline=`` (a part of a label: ``scratch``, a preset, ``actor.grad=dynamics``) adds ``"versus"``: each
    other setting's runs against the baseline's of the same env (:func:`versus`), and with runs of several envs
    ``"across_envs"``: each setting over the envs it ran (:func:`across_envs`).
    """
    if not runs:
        raise ValueError("compare needs at least one run folder")
    # `wmlab compare runs/*` also meets pretraining and world-model runs, which have no episode scores.
    skipped = [str(r) for r in runs if _job_of(r) != "dreamer"]
    runs = [r for r in runs if _job_of(r) == "dreamer"]
    if skipped:
        warnings.warn(f"compare: skipped {len(skipped)} folder(s) that are not dreamer runs: {', '.join(skipped)}",
                      stacklevel=2)
    if not runs:
        raise ValueError(f"compare found no dreamer run folder among {', '.join(skipped)}")
    settings = group_runs(runs)
    groups: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for label, members in settings.items():
        for run in members:
            steps, values = read_curve(run, key)
            if len(steps) == 0:
                raise ValueError(f"{run} logged no {key!r} with env_step yet; evaluate it first (eval.every=)")
            groups.setdefault(label, []).append((steps, values))
    refs: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    if reference is not None:
        records = read_reference(reference)
        last: dict[str, int] = {}
        for label, members in settings.items():
            env = str(run_setting(members[0])["env"])
            last[env] = max([last.get(env, 0), *(int(s.max()) for s, _ in groups[label])])
        for env, end in last.items():
            found = reference_curves(records, env, reference_gap)
            if not found:
                tasks = sorted({str(r["task"]) for r in records})
                raise ValueError(f"reference scores file {reference} has no task named like {env}; it has "
                                 f"{', '.join(tasks[:12])}{' …' if len(tasks) > 12 else ''}")
            for method, (steps, mean, std, n) in found.items():
                keep = np.arange(len(steps)) <= np.searchsorted(steps, end)  # up to the first round past the runs
                refs[f"{env} · {method} (reference)"] = (steps[keep], mean[keep], std[keep], n)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    table, rows, ref_table = {}, [], {}
    randoms = _random_baselines(runs) if key == "eval/return_mean" else {}
    for env, r in sorted(randoms.items()):
        ax.axhline(r["mean"], linestyle=":", color="0.5", linewidth=1,
                   label=f"{env} · random policy ({r['mean']:.0f})")
    for label, (grid, mean, std, n) in sorted(refs.items()):
        ax.plot(grid, mean, linestyle="--", color="0.35", label=f"{label} (n={int(n.max())})")
        ax.fill_between(grid, mean - std, mean + std, color="0.35", alpha=0.12)
        for x, m, s, k in zip(grid, mean, std, n):
            rows.append({"group": label, "env_step": int(x), "mean": float(m), "std": float(s), "runs": int(k)})
    for label, curves in sorted(groups.items()):
        common = sorted(set.intersection(*(set(s.tolist()) for s, _ in curves)))
        grid = np.asarray(common)
        stack = np.stack([np.asarray([v[list(s).index(x)] for x in common]) for s, v in curves])
        mean, std = stack.mean(0), stack.std(0)
        ax.plot(grid, mean, label=f"{label} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(grid, mean - std, mean + std, alpha=0.2)
        for x, m, s in zip(grid, mean, std):
            rows.append({"group": label, "env_step": int(x), "mean": float(m), "std": float(s), "runs": len(curves)})
        table[label] = {"env_steps": int(grid[-1]), "mean": float(mean[-1]), "std": float(std[-1]),
                        "runs": len(curves)}
    for label, (grid, mean, std, n) in sorted(refs.items()):
        env = label.split(" · ")[0]
        end = max(v["env_steps"] for k, v in table.items() if k.split(" · ")[0] == env)
        i = int(np.argmin(np.abs(grid - end)))
        ref_table[label] = {"env_steps": int(grid[i]), "mean": float(mean[i]), "std": float(std[i]),
                            "runs": int(n[i])}
    ax.set_xlabel("env steps")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["group", "env_step", "mean", "std", "runs"])
        writer.writeheader()
        writer.writerows(rows)
    result = {"plot": str(out), "points": str(out.with_suffix(".csv")), "final": table}
    if baseline is not None:
        result["versus"] = versus(groups, baseline)
        if len({label.split(" · ")[0] for label in groups}) > 1:
            result["across_envs"] = across_envs(result["versus"])
    if refs:
        result["reference"] = ref_table
    if randoms:
        result["random"] = randoms
    return result


def versus(groups: dict[str, list[tuple[np.ndarray, np.ndarray]]], baseline: str) -> dict[str, dict[str, Any]]:
    """Each setting's runs against the ``baseline`` setting's runs of the same env, over the evaluations they all
    made: per run the mean of its curve there (steadier than its last evaluation alone), then the mean ± std of
    those over each side's seeds, the probability that a run beats a baseline run and the one-sided permutation
    p-value of the gap (:mod:`wmlab.eval.stats`). ``groups`` maps labels to their runs' ``(env_steps, values)``."""
    from wmlab.eval.stats import permutation_p_value, probability_of_improvement

    by_env: dict[str, list[str]] = {}
    for label in groups:
        by_env.setdefault(label.split(" · ")[0], []).append(label)
    found: dict[str, dict[str, Any]] = {}
    for env, labels in by_env.items():
        bases = [label for label in labels if baseline in label.split(" · ")[1:]]
        if len(bases) != 1:
            raise ValueError(f"baseline={baseline!r} names {len(bases)} settings of {env} "
                             f"({', '.join(bases or labels)}); give a part of exactly one label (method, preset or "
                             "a distinguishing key=value)")
        base = bases[0]
        for label in labels:
            if label == base:
                continue
            curves = groups[label] + groups[base]
            steps = sorted(set.intersection(*(set(s.tolist()) for s, _ in curves)))
            if not steps:
                raise ValueError(f"{label} and {base} share no evaluation step to compare at")

            def averages(members: list[tuple[np.ndarray, np.ndarray]]) -> list[float]:
                return [float(np.mean([v[list(s).index(x)] for x in steps])) for s, v in members]

            ours, theirs = averages(groups[label]), averages(groups[base])
            found[label] = {"baseline": base, "env_steps": [int(x) for x in steps],
                            "average": float(np.mean(ours)), "average_std": float(np.std(ours)),
                            "baseline_average": float(np.mean(theirs)), "baseline_std": float(np.std(theirs)),
                            "runs": len(ours), "baseline_runs": len(theirs),
                            "p_improvement": probability_of_improvement(ours, theirs),
                            "p_value": permutation_p_value(ours, theirs), "scores": ours, "baseline_scores": theirs}
    return found


def across_envs(found: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """:func:`versus`'s comparisons gathered over envs, per setting (a label without its env): the mean over the
    envs it ran of its runs' average, the baseline's mean over the same envs, each env weighing alike, and the
    probability of improvement and permutation p-value with runs compared and relabelled only within their env
    (:func:`wmlab.eval.stats.stratified_permutation_p_value`), the form of a headline averaged over tasks."""
    from wmlab.eval.stats import stratified_permutation_p_value, stratified_probability_of_improvement

    by_setting: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for label, vs in found.items():
        env, *setting = label.split(" · ")
        by_setting.setdefault(" · ".join(setting), []).append((env, vs))
    across = {}
    for setting, members in by_setting.items():
        strata = [(vs["scores"], vs["baseline_scores"]) for _, vs in members]
        across[setting] = {"envs": [env for env, _ in members],
                           "average": float(np.mean([vs["average"] for _, vs in members])),
                           "baseline_average": float(np.mean([vs["baseline_average"] for _, vs in members])),
                           "p_improvement": stratified_probability_of_improvement(strata),
                           "p_value": stratified_permutation_p_value(strata)}
    return across


def _random_baselines(runs: Sequence[str | Path]) -> dict[str, dict[str, float]]:
    """Per env of ``runs``, the random policy's return (``wmlab.eval.scores.REFERENCE``) where every run of that
    env plays its episodes as the reference was measured (action repeat, episode length)."""
    from wmlab.eval.scores import MEASURED, REFERENCE

    played: dict[str, bool] = {}
    for run in runs:
        s = run_setting(run)
        env = str(s["env"])
        same = all(s.get(k, v) == v for k, v in MEASURED.items())
        played[env] = played.get(env, True) and same
    return {env: {"mean": REFERENCE[env]["random"], "std": REFERENCE[env].get("random_std", 0.0),
                  "episodes": REFERENCE[env].get("episodes", 0)}
            for env, ok in played.items() if ok and "random" in REFERENCE.get(env, {})}

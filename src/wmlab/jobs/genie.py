"""``wmlab train genie``: a generative interactive environment from video, trained in stages.

    wmlab collect env=procgen:coinrun episodes=10000 max_steps=500 workers=8 test_fraction=0.1 out=data/coinrun
    wmlab train genie data=data/coinrun run_dir=runs/genie preset=small          # tokenizer → lam → dynamics
    wmlab train genie data=data/coinrun run_dir=runs/genie_g guided=true          # dynamics on real actions
    wmlab train genie data=data/coinrun run_dir=runs/genie stage=dynamics         # one stage alone
    wmlab eval runs/genie                                                         # held-out split only
    wmlab generate runs/genie method=one_go out=gen.mp4
    wmlab play runs/genie

Each stage trains with the one trainer in ``<run_dir>/<stage>`` (its own checkpoints, metrics and resume);
a stage starts from the parts the earlier stages trained (in this run, or in ``init=<run_dir>``), and its
checkpoint holds the whole model, so the last one is a self-contained Genie.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wmlab.jobs import Job
from wmlab.jobs import doc_field as _doc
from wmlab.train.distributed import write_run_file


def _model_config() -> Any:
    from wmlab.models.genie import GenieConfig

    return GenieConfig()


def _trainer_config() -> Any:
    from wmlab.train import TrainerConfig

    return TrainerConfig(lr=1e-4, warmup=100, grad_clip=1.0, log_every=50, ckpt_every=500, eval_every=0)


@dataclass
class GenieEvalConfig:
    split: str = _doc("episodes to evaluate on: only the held-out split (metadata split=test)", "test")
    context: int = _doc("real prompt frames before the predicted ones", 4)
    horizon: int = _doc("frames predicted from the prompt and the actions", 10)
    windows: int = _doc("evaluation clips (random, seeded)", 32)
    batch_size: int = _doc("clips generated at once", 8)
    method: str = _doc("autoregressive (frame by frame) or one_go (all frames in one MaskGIT pass)",
                       "autoregressive")
    steps: int | None = _doc("MaskGIT iterations per frame (none: model.dynamics.steps)", None)
    temperature: float | None = _doc("sampling temperature (none: model.dynamics.temperature)", None)
    samples: int = _doc("clips saved as videos and shown in the report", 4)
    fid_net: str = _doc("feature network for FID (inception; tiny for smoke runs)", "inception")
    fid_weights: str | None = _doc("weights file of fid_net (FID is skipped without one)", None)
    fvd_net: str = _doc("feature network for FVD (i3d; tiny for smoke runs)", "i3d")
    fvd_weights: str | None = _doc("weights file of fvd_net (FVD is skipped without one)", None)
    seed: int = _doc("seed of the clip sampler and of generation", 0)


@dataclass
class GenieJobConfig:
    data: str = _doc("episode store to train on (its 'train' split when it has one)", "")
    run_dir: str = _doc("run folder; the same folder again resumes", "runs/genie")
    stage: str = _doc("all (tokenizer → lam → dynamics in order), tokenizer, lam or dynamics", "all")
    guided: bool = _doc("condition the dynamics on the data's real actions (no latent action model)", False)
    init: str | None = _doc("another Genie run whose trained parts this run starts from (e.g. its tokenizer)",
                            None)
    train_split: str | None = _doc("train on episodes of this split (none: 'train' when the store has one, else "
                                   "every episode not in eval.split)", None)
    batch_size: int = _doc("clips per batch", 8)
    length: int | None = _doc("frames per training clip (none: model.max_frames)", None)
    workers: int = _doc("DataLoader worker processes", 0)
    tokenizer_steps: int = _doc("optimizer updates of the tokenizer stage", 2000)
    lam_steps: int = _doc("optimizer updates of the latent-action stage", 2000)
    dynamics_steps: int = _doc("optimizer updates of the dynamics stage", 4000)
    model: Any = _doc("Genie config", factory=_model_config)
    trainer: Any = _doc("trainer config (steps come from <stage>_steps)", factory=_trainer_config)
    eval: GenieEvalConfig = _doc("evaluation config", factory=GenieEvalConfig)


def _store(path: str) -> Any:
    from wmlab.data.store import open_training_store

    return open_training_store(path, "make one with `wmlab collect env=procgen:coinrun episodes=1000 "
                                     "test_fraction=0.1 out=data/coinrun`")


def _model_spec(cfg: GenieJobConfig, store_spec: dict[str, Any]) -> dict[str, Any]:
    return {"image": tuple(store_spec["image"]), "action_discrete": bool(store_spec.get("action_discrete")),
            "num_actions": store_spec.get("num_actions")}


def _stages(cfg: GenieJobConfig) -> list[str]:
    order = ["tokenizer", "dynamics"] if cfg.model.guided else ["tokenizer", "lam", "dynamics"]
    if cfg.stage == "all":
        return order
    if cfg.stage not in order:
        raise ValueError(f"stage={cfg.stage!r}: choose all or one of {', '.join(order)}"
                         + (" (a guided Genie has no lam stage)" if cfg.stage == "lam" else ""))
    return [cfg.stage]


def _sync(cfg: GenieJobConfig) -> GenieJobConfig:
    """``guided=`` is a job-level switch for ``model.guided``."""
    if cfg.guided != cfg.model.guided:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, guided=cfg.guided or cfg.model.guided),
                                  guided=cfg.guided or cfg.model.guided)
    return cfg


def load_part(model: torch.nn.Module, part: str, source: str | Path) -> int | None:
    """Load the ``part`` (tokenizer, lam, dynamics) of the Genie checkpoint at ``source`` into ``model``;
    returns the checkpoint's step. A checkpoint that lacks the part or whose shapes differ is an error."""
    from safetensors.torch import load_file

    from wmlab.train import checkpoint as ckpt

    step_dir = ckpt.resolve(source)
    tensors = load_file(str(step_dir / "model.safetensors"))
    prefix = f"{part}."
    own = {k: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    found = {k: v for k, v in tensors.items() if k.startswith(prefix)}
    bad = sorted(k for k in own if k not in found or found[k].shape != own[k].shape)
    if bad:
        raise ckpt.CheckpointError(f"checkpoint {step_dir} has no {part} that fits this model ({bad[0]} missing "
                                   f"or of another shape); train stage={part} first or use the same model config")
    model.load_state_dict(found, strict=False)
    state = ckpt.read_state(step_dir) if (step_dir / "state.json").exists() else {}
    return state.get("step")


def _source(cfg: GenieJobConfig, part: str) -> Path | None:
    """Where a stage finds an earlier stage's part: this run's stage folder, else ``init=``."""
    from wmlab.train import checkpoint as ckpt

    own = Path(cfg.run_dir) / part
    if ckpt.find_last(own / "checkpoints") is not None:
        return own
    if cfg.init:
        base = Path(cfg.init)
        return base / part if (base / part / "checkpoints").exists() else base
    return None


def _needs(stage: str, guided: bool) -> list[str]:
    return {"tokenizer": [], "lam": [], "dynamics": ["tokenizer"] + ([] if guided else ["lam"])}[stage]


def build_model(cfg: GenieJobConfig, spec: dict[str, Any], stage: str = "tokenizer") -> Any:
    from wmlab.models.genie import Genie

    return Genie(cfg.model, _model_spec(cfg, spec), stage)


def _evaluator(store: Any, cfg: GenieJobConfig, stage: str) -> Any:
    """During the dynamics stage: held-out PSNR of generated frames beside copy-last, and a video."""
    small = dataclasses.replace(cfg.eval, windows=min(cfg.eval.windows, 8), samples=1, fid_weights=None,
                                fvd_weights=None, steps=min(cfg.eval.steps or cfg.model.dynamics.steps, 8))

    def evaluate(trainer: Any, step: int) -> dict[str, float]:
        result = evaluate_model(trainer.model, store, small, delta=False)
        trainer.model.train()
        context, truth, pred = result["samples"][0]
        trainer.log_video("generated", np.concatenate([np.concatenate([context, truth], 0),
                                                       np.concatenate([context, pred], 0)], axis=2), step)
        return {"heldout/psnr": result["pooled_psnr"], "heldout/copy_last_psnr": result["copy_last_pooled_psnr"]}

    return evaluate


def run(cfg: GenieJobConfig) -> dict[str, Any]:
    from wmlab.data.loader import make_loader
    from wmlab.jobs.world_model import _train_split
    from wmlab.train import Trainer, seed_everything

    cfg = _sync(cfg)
    store = _store(cfg.data)
    stages = _stages(cfg)
    length = cfg.length or cfg.model.max_frames
    if length > cfg.model.max_frames:
        raise ValueError(f"length={length} exceeds model.max_frames={cfg.model.max_frames}")
    split = cfg.train_split or _train_split(store, cfg.eval.split)
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_file(run_dir / "spec.json", json.dumps(_model_spec(cfg, store.spec)))
    results: dict[str, Any] = {}
    for stage in stages:
        seed_everything(cfg.trainer.seed)  # the same seed, the same initial weights
        model = build_model(cfg, store.spec, stage)
        for part in _needs(stage, cfg.model.guided):
            source = _source(cfg, part)
            if source is None:
                raise FileNotFoundError(f"stage {stage} needs a trained {part}: run stage={part} first in "
                                        f"{cfg.run_dir}, or pass init=<a Genie run that has one>")
            load_part(model, part, source)
        steps = getattr(cfg, f"{stage}_steps")
        tcfg = dataclasses.replace(cfg.trainer, steps=steps)

        def data(seed: int) -> Any:
            return make_loader(store.root, cfg.batch_size, length, workers=cfg.workers, seed=seed, split=split,
                               keys=("image", "action") if cfg.model.guided else ("image",))

        evaluators = []
        if stage == "dynamics" and tcfg.eval_every and store.ids(split=cfg.eval.split):
            evaluators.append(_evaluator(store, cfg, stage))
        params = [p for p in model.parts()[stage].parameters()]
        with Trainer(model, data, tcfg, Path(cfg.run_dir) / stage, evaluators=evaluators,
                     optimizer_groups=[{"params": params, "name": stage}], model_config=cfg.model) as trainer:
            results[stage] = trainer.fit()
    return results


# ----------------------------------------------------------------------------------------------- evaluation
def _clips(store: Any, split: str, length: int, count: int, seed: int, guided: bool) -> list[dict[str, np.ndarray]]:
    from wmlab.jobs.world_model import _windows

    windows = _windows(store, split, length, count, seed)
    keys = ("image", "action") if guided else ("image",)
    return [{k: w[k] for k in keys} for w in windows]


@torch.no_grad()
def evaluate_model(model: Any, store: Any, ecfg: GenieEvalConfig, delta: bool = True,
                   feature_nets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Generate held-out clips from ``context`` real frames and their actions (real actions when guided, else
    latent actions inferred from the real frames); PSNR/SSIM per predicted frame beside copy-last, and with
    ``delta`` the controllability ΔPSNR; FID/FVD when ``feature_nets`` has ``fid``/``fvd`` nets."""
    from wmlab.eval.metrics import copy_last_baseline, pooled_psnr_per_step, prediction_table, psnr_per_step

    model.eval()
    guided = model.lam is None
    length = ecfg.context + ecfg.horizon
    clips = _clips(store, ecfg.split, length, ecfg.windows, ecfg.seed, guided)
    device = next(model.parameters()).device
    gen = torch.Generator(device=device)
    out: dict[str, list[np.ndarray]] = {"pred": [], "truth": [], "context": [], "recon": [], "one": [], "all": []}
    for i in range(0, len(clips), ecfg.batch_size):
        chunk = clips[i:i + ecfg.batch_size]
        image = torch.as_tensor(np.stack([c["image"] for c in chunk])).to(device)
        batch = {"image": image}
        if guided:
            batch["action"] = torch.as_tensor(np.stack([c["action"] for c in chunk])).to(device)
        actions = model.actions_of(batch)  # [B, length-1]
        prompt = image[:, :ecfg.context]

        def generate(acts: torch.Tensor) -> np.ndarray:
            gen.manual_seed(ecfg.seed * 1_000_003 + i)  # the same sampling noise for every action sequence
            return model.generate(prompt, acts, ecfg.method, ecfg.steps, ecfg.temperature, gen).cpu().numpy()

        out["pred"].append(generate(actions))
        out["truth"].append(image[:, ecfg.context:].cpu().numpy())
        out["context"].append(prompt.cpu().numpy())
        out["recon"].append(model.tokenizer.decode(model.tokenizer.encode(image[:, ecfg.context:])).cpu().numpy())
        if delta:
            rng = torch.Generator().manual_seed(ecfg.seed + i)
            first = ecfg.context - 1  # the action leading into the first predicted frame
            other = actions.clone()
            shift = torch.randint(1, model.num_actions, (actions.shape[0],), generator=rng).to(device)
            other[:, first] = (actions[:, first] + shift) % model.num_actions
            out["one"].append(generate(other))
            rand = actions.clone()
            rand[:, first:] = torch.randint(0, model.num_actions, rand[:, first:].shape, generator=rng).to(device)
            out["all"].append(generate(rand))
    arrays = {k: np.concatenate(v) for k, v in out.items() if v}
    pred, truth, context = arrays["pred"], arrays["truth"], arrays["context"]
    table = prediction_table(pred, truth, context)
    table["tokenizer_psnr"] = psnr_per_step(arrays["recon"], truth)
    table["pooled_psnr"] = pooled_psnr_per_step(pred, truth)
    table["baseline_pooled_psnr"] = pooled_psnr_per_step(copy_last_baseline(context, ecfg.horizon), truth)
    table["tokenizer_pooled_psnr"] = pooled_psnr_per_step(arrays["recon"], truth)
    result: dict[str, Any] = {
        "table": table,
        "pooled_psnr": float(table["pooled_psnr"].mean()),
        "copy_last_pooled_psnr": float(table["baseline_pooled_psnr"].mean()),
        "tokenizer_pooled_psnr": float(table["tokenizer_pooled_psnr"].mean()),
        "psnr": float(table["psnr"].mean()), "copy_last_psnr": float(table["baseline_psnr"].mean()),
        "ssim": float(table["ssim"].mean()), "copy_last_ssim": float(table["baseline_ssim"].mean()),
        "tokenizer_psnr": float(table["tokenizer_psnr"].mean()),
        "samples": [(context[j], truth[j], pred[j]) for j in range(min(ecfg.samples, len(pred)))],
    }
    if delta:
        # ΔPSNR (pooled): how much worse the frames after an action get when that action is replaced by another
        # (one: the action into the first predicted frame; all: every action from there on is random).
        # > 0: the actions matter. The same sampling noise is used for every action sequence.
        table["delta_psnr_one"] = table["pooled_psnr"] - pooled_psnr_per_step(arrays["one"], truth)
        table["delta_psnr_all"] = table["pooled_psnr"] - pooled_psnr_per_step(arrays["all"], truth)
        result["delta_psnr_one"] = float(table["delta_psnr_one"].mean())
        result["delta_psnr_all"] = float(table["delta_psnr_all"].mean())
    if feature_nets:
        from wmlab.eval.features import fid, fvd

        if "fid" in feature_nets:
            result["fid"] = fid(truth, pred, feature_nets["fid"])
            result["copy_last_fid"] = fid(truth, np.repeat(context[:, -1:], ecfg.horizon, 1), feature_nets["fid"])
        if "fvd" in feature_nets:
            result["fvd"] = fvd(truth, pred, feature_nets["fvd"])
            result["copy_last_fvd"] = fvd(truth, np.repeat(context[:, -1:], ecfg.horizon, 1), feature_nets["fvd"])
    return result


def _check_heldout(cfg: GenieJobConfig, store: Any, split: str) -> None:
    """Genie is scored only on episodes it never trained on."""
    from wmlab.data.store import selects
    from wmlab.jobs.world_model import _train_split

    if not store.ids(split=split):
        raise ValueError(f"store {cfg.data} has no {split!r} episodes to evaluate on; collect a held-out split "
                         f"(`wmlab collect ... test_fraction=0.1`): Genie is never scored on its training data")
    trained_on = cfg.train_split or _train_split(store, cfg.eval.split)
    if selects(trained_on, split):
        raise ValueError(f"eval split {split!r} is the data this run trained on; evaluate on the held-out split "
                         f"(eval split=test)")


def _feature_nets(ecfg: GenieEvalConfig) -> tuple[dict[str, Any], list[str]]:
    from wmlab.eval.features import load_feature_net

    nets, notes = {}, []
    for key, name, weights in (("fid", ecfg.fid_net, ecfg.fid_weights), ("fvd", ecfg.fvd_net, ecfg.fvd_weights)):
        if weights:
            video = {"video": True} if key == "fvd" and name == "tiny" else {}  # the tiny net has both kinds
            nets[key] = load_feature_net(name, weights, **video)
        else:
            notes.append(f"{key.upper()} not computed: pass eval.{key}_weights=<{name} weights file>")
    return nets, notes


def load_trained(run_dir: str | Path, cfg: GenieJobConfig | None = None) -> tuple[Any, GenieJobConfig, int | None]:
    """The last trained Genie of a run (the latest stage that has a checkpoint) and its job config."""
    from wmlab import config as C
    from wmlab.train import checkpoint as ckpt

    run = Path(run_dir)
    if cfg is None:
        cfg = C.load(GenieJobConfig, run / "config.yaml")
    cfg = _sync(cfg)
    spec_path = run / "spec.json"
    if not spec_path.exists():
        raise FileNotFoundError(f"{spec_path} is missing: {run} holds no trained Genie (train one with "
                                f"`wmlab train genie data=<store> run_dir={run}`)")
    spec = json.loads(spec_path.read_text())
    model = build_model(cfg, spec, "dynamics")
    step = None
    for part in ("tokenizer", "lam", "dynamics"):
        if part not in model.parts():
            continue
        source = _source(cfg, part)
        if source is None:
            raise ckpt.CheckpointNotFoundError(f"{run} has no trained {part}: train it with `wmlab train genie "
                                               f"run_dir={run} stage={part}`")
        step = load_part(model, part, source)
    model.eval()
    return model, cfg, step


def evaluate(cfg: GenieJobConfig, **overrides: Any) -> dict[str, Any]:
    """Evaluate a trained Genie on the held-out split: PSNR/SSIM per frame beside copy-last, ΔPSNR, FID/FVD
    (with feature weights), sample videos, report.html and eval.json."""
    from wmlab import config as C
    from wmlab.eval.report import read_metrics, write_report
    from wmlab.train.logger import write_mp4

    ecfg = C.apply(cfg.eval, overrides)
    store = _store(cfg.data)
    _check_heldout(cfg, store, ecfg.split)
    model, cfg, step = load_trained(cfg.run_dir, cfg)
    nets, notes = _feature_nets(ecfg)
    result = evaluate_model(model, store, ecfg, delta=True, feature_nets=nets)
    run = Path(cfg.run_dir)
    table = result.pop("table")
    samples = result.pop("samples")
    videos = []
    for j, (context, truth, pred) in enumerate(samples):
        frames = np.concatenate([np.concatenate([context, truth], 0), np.concatenate([context, pred], 0)], axis=2)
        videos.append(str(write_mp4(run / "eval" / f"sample_{j}.mp4", frames, fps=8)))
    summary = {"data": cfg.data, "eval split": ecfg.split, "checkpoint step": step, "method": ecfg.method,
               "MaskGIT steps": ecfg.steps or cfg.model.dynamics.steps,
               "context / horizon": f"{ecfg.context} / {ecfg.horizon}", "clips": ecfg.windows,
               **{k: round(v, 4) for k, v in result.items()}, "notes": notes}
    records = []
    for stage in ("tokenizer", "lam", "dynamics"):
        records += read_metrics(run / stage / "metrics.jsonl")
    report = write_report(run / "report.html", title=f"Genie: {run.name}", table=table, samples=samples,
                          records=records, summary=summary,
                          loss_keys=("train/tokenizer/mse", "train/lam/mse", "train/dynamics/ce"))
    out = {**summary, "videos": videos, "report": str(report),
           "per_step": {k: [round(float(v), 4) for v in vals] for k, vals in table.items()}}
    (run / "eval.json").write_text(json.dumps(out, indent=2))
    return out


# ----------------------------------------------------------------------------------------------- generation
def generate(run_dir: str, out: str | None = None, episode: str | None = None, start: int = 0, prompt: int = 4,
             frames: int = 10, actions: Any = None, method: str = "autoregressive", steps: int | None = None,
             temperature: float | None = None, seed: int = 0, split: str = "test") -> dict[str, Any]:
    """Generate ``frames`` frames after ``prompt`` real frames of a held-out episode and write them as video
    (real above, generated below). ``actions`` (ids, comma-separated or a list) replaces the actions after the
    prompt; without it the clip's own actions are used (inferred latent actions, or real ones when guided)."""
    from wmlab.train.logger import write_mp4

    model, cfg, _ = load_trained(run_dir)
    store = _store(cfg.data)
    ids = store.ids(split=split) or store.ids()
    eid = episode or ids[0]
    length = min(store.length(eid) - start, prompt + frames)
    if length < prompt + 1:
        raise ValueError(f"episode {eid} has {store.length(eid)} steps: too short for prompt={prompt} from "
                         f"start={start}")
    clip = store.window(eid, start, length)
    image = torch.as_tensor(clip["image"])[None]
    batch = {"image": image}
    if model.lam is None:
        batch["action"] = torch.as_tensor(clip["action"])[None]
    acts = model.actions_of(batch)
    if actions is not None:
        given = [int(a) for a in (actions.split(",") if isinstance(actions, str) else actions)]
        acts = torch.cat([acts[:, :prompt - 1], torch.tensor(given)[None]], 1)
    else:
        acts = torch.cat([acts, acts[:, -1:].repeat(1, prompt + frames - 1 - acts.shape[1])], 1) \
            if acts.shape[1] < prompt + frames - 1 else acts
    gen = torch.Generator().manual_seed(seed)
    pred = model.generate(image[:, :prompt], acts, method, steps, temperature, gen)[0].numpy()
    real = clip["image"]
    real = np.concatenate([real, np.repeat(real[-1:], prompt + len(pred) - len(real), 0)]) \
        if len(real) < prompt + len(pred) else real[:prompt + len(pred)]
    video = np.concatenate([real, np.concatenate([clip["image"][:prompt], pred], 0)], axis=1)
    path = Path(out or Path(run_dir) / "generate" / f"{eid}_{start}_{method}.mp4")
    write_mp4(path, video, fps=8)
    return {"video": str(path), "episode": eid, "prompt": prompt, "frames": int(len(pred)), "method": method,
            "actions": acts[0, prompt - 1:].tolist()}


# ------------------------------------------------------------------------------------------------------ play
PROCGEN_KEYS = {"left": 1, "right": 7, "up": 5, "down": 3, "space": 5, "a": 2, "d": 8, "s": 4}
PROCGEN_NAMES = ["left+down", "left", "left+up", "down", "noop", "up", "right+down", "right", "right+up",
                 "d", "a", "w", "s", "q", "e"]


class GenieWorld:
    """A trained Genie as a playable world (see :mod:`wmlab.play`): one action id per step, frames out."""

    def __init__(self, model: Any, steps: int | None = None, temperature: float | None = None, seed: int = 0,
                 default_start: str | None = None) -> None:
        from wmlab.models.genie import GenieStream

        self.model = model
        self.size = tuple(model.image[:2])
        self.default_start = default_start
        n = model.num_actions
        if model.lam is None and n == 15:  # Procgen's 15 actions
            self.keys, self.action_names, self.idle_action = dict(PROCGEN_KEYS), list(PROCGEN_NAMES), 4
        else:
            self.keys = {str(i + 1): i for i in range(min(n, 9))}
            self.action_names = [f"{'latent ' if model.lam is not None else ''}action {i}" for i in range(n)]
            self.idle_action = 0
        self.stream = GenieStream(model, model.cfg.dynamics.steps if steps is None else int(steps),
                                  model.cfg.dynamics.temperature if temperature is None else float(temperature),
                                  torch.Generator().manual_seed(seed))

    def reset(self, frame: np.ndarray) -> np.ndarray:
        image = torch.as_tensor(np.ascontiguousarray(frame))[None, None]
        return self.stream.start(image, torch.zeros(1, 0, dtype=torch.long))[0, 0].numpy()

    def step(self, action: int) -> np.ndarray:
        return self.stream.step(torch.tensor([int(action)]))[0].numpy()


def load_world(run_dir: str, steps: int | None = None, temperature: float | None = None, seed: int = 0) -> GenieWorld:
    """The playable world of a trained Genie run."""
    model, cfg, _ = load_trained(run_dir)
    return GenieWorld(model, steps, temperature, seed, default_start=cfg.data or None)


# --------------------------------------------------------------------------------------------------- presets
def _tiny_model(width: int, depth: int, codes: int, **patches: int) -> dict[str, Any]:
    """Transformer sizes of the CPU presets; ``tokenizer_patch=``/``lam_patch=`` where they differ from the
    defaults (4 and 16 pixels)."""
    heads = max(1, width // 64)
    tokenizer = {"width": width, "enc_depth": depth, "dec_depth": depth, "heads": heads, "codes": codes}
    lam = {"width": width, "enc_depth": depth, "dec_depth": depth, "heads": heads}
    if "tokenizer_patch" in patches:
        tokenizer["patch"] = patches["tokenizer_patch"]
    if "lam_patch" in patches:
        lam["patch"] = patches["lam_patch"]
    return {"tokenizer": tokenizer, "lam": lam, "dynamics": {"width": width, "depth": depth * 2, "heads": heads}}


PRESETS: dict[str, dict[str, Any]] = {
    # Seconds on a CPU, for tests and smoke runs.
    "debug": {"batch_size": 2, "tokenizer_steps": 20, "lam_steps": 20, "dynamics_steps": 20,
              "model": {"tokenizer": {"width": 32, "enc_depth": 1, "dec_depth": 1, "heads": 2, "codes": 32,
                                      "code_dim": 8},
                        "lam": {"width": 32, "enc_depth": 1, "dec_depth": 1, "heads": 2, "codes": 4, "code_dim": 8},
                        "dynamics": {"width": 32, "depth": 1, "heads": 2, "steps": 4},
                        "max_frames": 8},
              "trainer": {"log_every": 5, "ckpt_every": 10, "warmup": 0, "progress": False},
              "eval": {"context": 2, "horizon": 4, "windows": 4, "batch_size": 4, "samples": 2}},
    # Interactive on 2 CPU cores.
    "tiny": {"model": _tiny_model(128, 2, 256, tokenizer_patch=8)},
    # The CPU training budget of one session (see README).
    "small": {"model": _tiny_model(256, 4, 512, lam_patch=8)},
    # GenieRedux sizes, for GPUs.
    "paper": {"batch_size": 32, "tokenizer_steps": 150_000, "lam_steps": 100_000, "dynamics_steps": 200_000,
              "trainer": {"lr": 3e-4, "warmup": 5000, "ckpt_every": 5000, "eval_every": 5000}},
}

JOB = Job("genie", GenieJobConfig, run, evaluate, PRESETS)

"""The training loop: loss falls, bf16 autocast, clipping, non-finite guard, accumulation, logging, evaluators."""

import json
import os
import subprocess
import sys
import warnings

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from torch import nn

from wmlab.config import ConfigError
from wmlab.train import Trainer, TrainerConfig
from wmlab.train.checkpoint import find_last, read_state


class Regressor(nn.Module):
    """y = x @ w; records the dtype its Linear produced, and turns the loss NaN on batches flagged ``poison``."""

    def __init__(self, dim: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 16), nn.Dropout(dropout), nn.Tanh(), nn.Linear(16, 1))
        self.seen_dtype = None

    def loss(self, batch):
        pred = self.net(batch["x"])
        self.seen_dtype = pred.dtype
        loss = (pred.float() - batch["y"]).pow(2).mean()
        if "poison" in batch and bool(batch["poison"]):
            loss = loss * float("nan")
        return loss, {"abs_err": (pred.float() - batch["y"]).abs().mean()}


def regression_data(seed=0, batch=32, dim=4, scale=1.0, poison_at=()):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, 1, generator=g)
    i = 0
    while True:
        x = torch.randn(batch, dim, generator=g)
        out = {"x": x, "y": scale * torch.tanh(x @ w)}
        if i in poison_at:
            out["poison"] = torch.tensor(True)
        i += 1
        yield out


def cfg(**kw):
    base = dict(steps=10, lr=1e-2, precision="fp32", log_every=1, ckpt_every=0, progress=False, tensorboard=False)
    base.update(kw)
    return TrainerConfig(**base)


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_loss_falls(tmp_path):
    torch.manual_seed(0)
    out = Trainer(Regressor(), regression_data(), cfg(steps=80, lr=2e-2, log_every=10), tmp_path).fit()
    losses = [r["train/loss"] for r in rows(tmp_path)]
    assert len(losses) == 8 and out["step"] == 80
    assert losses[-1] < 0.2 * losses[0], losses
    assert out["train/loss"] == losses[-1] and "train/abs_err" in out


@pytest.mark.parametrize("precision,dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_precision_policy(tmp_path, precision, dtype):
    model = Regressor()
    Trainer(model, regression_data(), cfg(steps=2, precision=precision), tmp_path).fit()
    assert model.seen_dtype == dtype
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32 under autocast


def _cpu_bf16(monkeypatch, native):
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: native, raising=False)


@pytest.mark.parametrize("native,dtype", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_precision_is_bf16_only_where_the_cpu_has_it(tmp_path, monkeypatch, native, dtype):
    _cpu_bf16(monkeypatch, native)
    model = Regressor()
    trainer = Trainer(model, regression_data(), cfg(steps=2, precision="auto", device="cpu", ckpt_every=2),
                      tmp_path)
    trainer.fit()
    assert model.seen_dtype == dtype and trainer.precision == ("bf16" if native else "fp32")
    state = read_state(find_last(tmp_path / "checkpoints"))
    assert state["precision"] == trainer.precision and state["trainer"]["precision"] == "auto"


def test_bf16_asked_for_without_native_bf16_warns(tmp_path, monkeypatch, caplog):
    _cpu_bf16(monkeypatch, False)
    with caplog.at_level("WARNING", logger="wmlab.train"):
        Trainer(Regressor(), regression_data(), cfg(steps=1, precision="bf16", device="cpu"), tmp_path)
    assert "no native bf16" in caplog.text and "precision=auto or fp32" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="wmlab.train"):
        Trainer(Regressor(), regression_data(), cfg(steps=1, precision="auto", device="cpu"), tmp_path / "b")
    assert "native bf16" not in caplog.text


def test_grad_clip_caps_the_norm(tmp_path):
    torch.manual_seed(0)
    model = Regressor()
    out = Trainer(model, regression_data(scale=100.0), cfg(steps=1, grad_clip=0.5), tmp_path / "a").fit()
    clipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert out["train/grad_norm"] > 5.0  # the logged norm is the one before clipping
    assert clipped <= 0.5 + 1e-5
    torch.manual_seed(0)
    model = Regressor()
    out = Trainer(model, regression_data(scale=100.0), cfg(steps=1, grad_clip=0), tmp_path / "b").fit()
    unclipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert float(unclipped) == pytest.approx(out["train/grad_norm"], rel=1e-5)


def test_learning_rate_warms_up_holds_and_decays(tmp_path):
    schedule = dict(steps=10, lr=1e-2, warmup=2, decay=4)
    Trainer(Regressor(), regression_data(), cfg(**schedule), tmp_path / "a").fit()
    lrs = [r["train/lr"] for r in rows(tmp_path / "a") if "train/lr" in r]
    want = [5e-3, 1e-2, 1e-2, 1e-2, 1e-2, 1e-2, 1e-2, 7.5e-3, 5e-3, 2.5e-3]
    assert lrs == pytest.approx(want)
    # Stopped after a checkpoint at step 6 and resumed: the remaining updates follow the same schedule.
    Trainer(Regressor(), regression_data(), cfg(ckpt_every=3, **schedule), tmp_path / "b").fit(6)
    Trainer(Regressor(), regression_data(), cfg(ckpt_every=3, **schedule), tmp_path / "b").fit()
    resumed = {r["step"]: r["train/lr"] for r in rows(tmp_path / "b") if "train/lr" in r}
    assert [resumed[s] for s in range(7, 11)] == pytest.approx(want[6:])


def test_nonfinite_loss_skips_the_update(tmp_path):
    model = Regressor()
    trainer = Trainer(model, regression_data(poison_at={1}), cfg(steps=3), tmp_path)
    trainer.fit(until=1)
    before = [p.detach().clone() for p in model.parameters()]
    moments = [s["exp_avg"].clone() for s in trainer.optimizer.state.values()]
    with pytest.warns(RuntimeWarning, match=r"step 2: non-finite loss=nan"):
        out = trainer.fit(until=2)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(torch.equal(a, s["exp_avg"]) for a, s in zip(moments, trainer.optimizer.state.values()))
    assert trainer.skipped_steps == 1 and out["skipped_steps"] == 1
    out = trainer.fit()
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert out["train/skipped_steps"] == 1 and out["step"] == 3
    logged = rows(tmp_path)
    assert [r["train/skipped_steps"] for r in logged] == [0, 1, 1]
    assert "train/loss" not in logged[1]  # the skipped step contributes no metrics
    assert np.isfinite(logged[2]["train/loss"])


def test_grad_accumulation_matches_the_full_batch(tmp_path):
    full = list(zip(range(1), regression_data(batch=16)))[0][1]
    halves = [{k: v[:8] for k, v in full.items()}, {k: v[8:] for k, v in full.items()}]
    torch.manual_seed(0)
    a = Regressor()
    b = Regressor()
    b.load_state_dict(a.state_dict())
    Trainer(a, iter([full]), cfg(steps=1, grad_clip=0), tmp_path / "a").fit()
    Trainer(b, iter(halves), cfg(steps=1, grad_clip=0, grad_accum=2), tmp_path / "b").fit()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-7)


def test_evaluators_run_at_their_steps_without_changing_training(tmp_path):
    calls = []

    def evaluator(trainer, step):
        calls.append(step)
        torch.rand(100)  # evaluation randomness must not leak into training
        return {"score": float(step), "split/custom": 1.0}

    model, other = Regressor(dropout=0.3), Regressor(dropout=0.3)  # dropout: randomness inside training
    other.load_state_dict(model.state_dict())
    out = Trainer(model, regression_data(), cfg(steps=10, eval_every=4, log_every=5), tmp_path / "with",
                  evaluators=[evaluator]).fit()
    assert calls == [4, 8, 10]
    assert out["eval/score"] == 10.0 and out["split/custom"] == 1.0
    evals = [r for r in rows(tmp_path / "with") if "eval/score" in r]
    assert [r["step"] for r in evals] == [4, 8, 10]
    Trainer(other, regression_data(), cfg(steps=10, log_every=5), tmp_path / "without").fit()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), other.parameters()))


def test_tensorboard_scalars_are_written(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    Trainer(Regressor(), regression_data(), cfg(steps=4, log_every=2, tensorboard=True), tmp_path).fit()
    files = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(files) == 1
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [2, 4]
    assert "train/grad_norm" in acc.Tags()["scalars"]


def test_log_video_writes_an_mp4_and_a_strip(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = Trainer(Regressor(), regression_data(), cfg(steps=1, tensorboard=True), tmp_path)
    frames = np.random.default_rng(0).integers(0, 255, (2, 6, 10, 12, 3), dtype=np.uint8)  # [N,T,H,W,C]
    path = trainer.log_video("eval/rollout", frames, step=3)
    trainer.close()
    assert path == tmp_path / "videos" / "eval_rollout_00000003.mp4"
    back = imageio.mimread(path)
    assert len(back) == 6 and back[0].shape == (10, 24, 3)  # two samples side by side
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert "eval/rollout" in acc.Tags()["images"]
    with pytest.raises(ValueError, match="uint8"):
        trainer.log_video("bad", frames.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[T,H,W,C\]"):
        trainer.log_video("bad", frames[0, 0])


def test_bad_settings_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="precision='fp16'"):
        Trainer(Regressor(), regression_data(), cfg(precision="fp16"), tmp_path)
    with pytest.raises(TypeError, match="no loss"):
        Trainer(nn.Linear(2, 2), regression_data(), cfg(), tmp_path)
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if wandb were not installed
    with pytest.raises(ConfigError, match="pip install wandb"):
        Trainer(Regressor(), regression_data(), cfg(wandb=True), tmp_path)


def test_data_factory_gets_the_rank_seed_and_finite_data_repeats(tmp_path):
    seeds = []

    def factory(seed):
        seeds.append(seed)
        return [next(regression_data(seed))]  # one batch: the loop must start a new pass each step

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = Trainer(Regressor(), factory, cfg(steps=3, seed=7), tmp_path).fit()
    assert seeds == [7] and out["step"] == 3


def test_more_processes_than_gpus_is_a_clear_error(monkeypatch):
    from wmlab.train.precision import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="2 processes on this node but it has 1 GPU.*--nproc-per-node=1 or device=cpu"):
        pick_device("cuda")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert pick_device("cuda") == torch.device("cuda", 0)


def test_mp4_without_its_writer_names_the_package(tmp_path, monkeypatch):
    from wmlab.config import MissingDependencyError
    from wmlab.train.logger import write_mp4

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"clip\.mp4 needs the imageio-ffmpeg package"):
        write_mp4(tmp_path / "clip.mp4", np.zeros((2, 8, 8, 3), np.uint8))
    assert not (tmp_path / "clip.mp4").exists()


HEAP = """
import ctypes, sys
import torch
from wmlab.train.memory import keep_freed_memory


class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                       "fsmblks", "uordblks", "fordblks", "keepcost")]


libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
if sys.argv[1] == "reuse":
    assert keep_freed_memory()
mapped = libc.mallinfo2().hblkhd
x = torch.ones(16_000_000)  # 64 MB, above glibc's largest mmap threshold
mapped = libc.mallinfo2().hblkhd - mapped
free = libc.mallinfo2().fordblks
del x
print(mapped, libc.mallinfo2().fordblks - free)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_reused_memory_keeps_large_blocks_in_the_heap():
    def heap(mode):
        out = subprocess.run([sys.executable, "-c", HEAP, mode], capture_output=True, text=True, check=True)
        return [int(v) for v in out.stdout.split()[-2:]]

    mapped, kept = heap("system")
    assert mapped >= 64_000_000 and kept < 64_000_000  # its own mapping, unmapped again on free
    mapped, kept = heap("reuse")
    assert mapped == 0 and kept >= 64_000_000  # served from the heap, and kept there for the next step


def test_the_trainer_reuses_memory_on_cpu_unless_told_not_to(tmp_path, monkeypatch):
    import wmlab.train.trainer as trainer_module

    calls = []
    monkeypatch.setattr(trainer_module, "keep_freed_memory", lambda: calls.append(1) or True)
    Trainer(Regressor(), regression_data(), cfg(steps=1), tmp_path / "a")
    assert calls == [1]
    Trainer(Regressor(), regression_data(), cfg(steps=1, reuse_memory=False), tmp_path / "b")
    assert calls == [1]


def test_wandb_runs_offline_unless_told_and_resumes_its_run(tmp_path, monkeypatch):
    """With a stand-in wandb module: offline by default, the user's WANDB_MODE kept, one run id per run_dir
    across a resume, scalars logged at the trainer's steps."""
    import types

    runs = []

    class FakeRun:
        def __init__(self, **kw):
            self.init, self.logged, self.finished = dict(kw, mode=os.environ.get("WANDB_MODE")), [], False
            runs.append(self)

        def log(self, values, step):
            self.logged.append((step, dict(values)))

        def finish(self):
            self.finished = True

    ids = iter(["first-id", "second-id"])
    fake = types.SimpleNamespace(init=lambda **kw: FakeRun(**kw), Image=lambda image: image,
                                 util=types.SimpleNamespace(generate_id=lambda: next(ids)))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with Trainer(Regressor(), regression_data(), cfg(steps=2, log_every=1, wandb=True, ckpt_every=2), tmp_path) as t:
        t.fit()
    monkeypatch.setenv("WANDB_MODE", "online")
    trainer = Trainer(Regressor(), regression_data(), cfg(steps=4, log_every=1, wandb=True, ckpt_every=2), tmp_path)
    trainer.fit()
    trainer.close()
    first, second = runs
    assert first.init["mode"] == "offline" and second.init["mode"] == "online"  # the user's choice stands
    assert first.init["id"] == second.init["id"] == "first-id" and second.init["resume"] == "allow"
    assert [s for s, v in first.logged if "train/loss" in v] == [1, 2]
    assert [s for s, v in second.logged if "train/loss" in v] == [3, 4] and first.finished and second.finished

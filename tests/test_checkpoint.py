"""Checkpoints: layout without pickle, atomic ``last`` pointer, keep-K, exact resume, clear errors."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from wmlab.train import CheckpointError, CheckpointNotFoundError, Trainer, TrainerConfig, load_weights
from wmlab.train import treecodec
from wmlab.train.checkpoint import FILES


class Net(nn.Module):
    """A tiny MLP with dropout, so exact resume also depends on the restored RNG."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, 1))

    def loss(self, batch):
        err = self.net(batch["x"]).float() - batch["y"]
        return err.pow(2).mean(), {"max_err": err.abs().max()}


class OtherNet(Net):
    pass


class Tied(nn.Module):
    """Input and output embeddings share one tensor (stored once in safetensors)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.emb.weight

    def loss(self, batch):
        return nn.functional.cross_entropy(self.out(self.emb(batch["t"])), batch["t"]), {}


class PositionData:
    """Batch ``i`` is a pure function of (seed, i); the position is the data state the trainer checkpoints."""

    def __init__(self, seed: int = 0):
        self.seed, self.position = seed, 0

    def __iter__(self):
        return self

    def __next__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.position)
        self.position += 1
        x = torch.randn(8, 3, generator=g)
        return {"x": x, "y": x.sum(-1, keepdim=True).sin(), "t": torch.randint(0, 10, (8,), generator=g)}

    def state_dict(self):
        return {"position": self.position}

    def load_state_dict(self, state):
        self.position = state["position"]


def cfg(**kw):
    base = dict(steps=8, lr=1e-2, warmup=3, precision="fp32", log_every=1, ckpt_every=4, keep_checkpoints=2,
                progress=False, tensorboard=False)
    base.update(kw)
    return TrainerConfig(**base)


def train(run_dir, model_cls=Net, until=None, **kw):
    torch.manual_seed(0)
    model = model_cls()
    trainer = Trainer(model, PositionData(), cfg(**kw), run_dir)
    trainer.fit(until)
    trainer.close()
    return model, trainer


def test_layout_is_exactly_safetensors_and_json(tmp_path):
    _, trainer = train(tmp_path, steps=10, ckpt_every=2, keep_checkpoints=2)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["00000008", "00000010", "last"]  # keep-K pruned the rest
    assert (root / "last").read_text().strip() == "00000010"
    step_dir = root / "00000010"
    assert sorted(p.name for p in step_dir.iterdir()) == sorted(FILES)
    model_sd = load_file(step_dir / "model.safetensors")
    assert set(model_sd) == set(trainer.model.state_dict())
    opt = json.loads((step_dir / "optimizer.json").read_text())
    assert set(load_file(step_dir / "optimizer.safetensors")) == {
        v["__tensor__"] for s in opt["state"]["__items__"] for v in s[1].values()}
    state = json.loads((step_dir / "state.json").read_text())
    assert state["step"] == 10 and state["model_class"].endswith("test_checkpoint.Net")
    assert state["data"] == [{"position": 10}] and state["skipped_steps"] == 0 and len(state["rng"]) == 1
    for f in tmp_path.rglob("*"):  # nothing anywhere is a pickle or a torch.save zip
        if f.is_file():
            head = f.read_bytes()[:2]
            assert head[:1] != b"\x80" and head != b"PK", f


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_after_a_crash_is_bitwise_exact(tmp_path, precision):
    straight, _ = train(tmp_path / "straight", precision=precision)
    # The "crashed" run stops at step 6; its last checkpoint is step 4; steps 5-6 are lost and redone.
    train(tmp_path / "resumed", until=6, precision=precision)
    torch.manual_seed(123)  # the resumed process starts from other RNG states; the checkpoint restores them
    model = Net()
    trainer = Trainer(model, PositionData(), cfg(precision=precision), tmp_path / "resumed")
    assert trainer.step == 4 and trainer.data.position == 4
    trainer.fit()
    for p, q in zip(straight.parameters(), model.parameters()):
        assert torch.equal(p, q)
    logged = [[{k: v for k, v in json.loads(line).items() if not k.startswith("time")}
               for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
              for run in ("straight", "resumed")]
    assert [r["step"] for r in logged[1]] == list(range(1, 9))  # rows 5-6 of the crashed run were dropped
    assert logged[0] == logged[1]


def test_resume_ignores_half_written_checkpoints(tmp_path):
    train(tmp_path, until=4)
    partial = tmp_path / "checkpoints" / ".tmp-00000008-999"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    trainer = Trainer(Net(), PositionData(), cfg(), tmp_path)
    assert trainer.step == 4 and not partial.exists()


def test_another_model_class_is_refused_naming_the_checkpoint(tmp_path):
    train(tmp_path, until=4)
    with pytest.raises(CheckpointError, match=r"checkpoints/00000004 holds a .*\.Net but this run builds a "
                                              r".*OtherNet; start a new run_dir"):
        Trainer(OtherNet(), PositionData(), cfg(), tmp_path)


def test_other_shapes_or_config_are_refused(tmp_path):
    train(tmp_path, until=4)
    with pytest.raises(CheckpointError, match=r"model.safetensors does not fit Net: shape differences "
                                              r"\[net.0.bias: \(16,\) in file vs \(32,\) in model"):
        Trainer(Net(hidden=32), PositionData(), cfg(), tmp_path)
    other = tmp_path / "cfg"
    Trainer(Net(), PositionData(), cfg(), other, model_config={"hidden": 16}).fit(4)
    with pytest.raises(CheckpointError, match=r"another model config \(hidden: 16 -> 32\)"):
        Trainer(Net(), PositionData(), cfg(), other, model_config={"hidden": 32})


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "optimizer.json", "state.json"])
def test_a_corrupt_file_is_named(tmp_path, name):
    train(tmp_path, until=4)
    path = tmp_path / "checkpoints" / "00000004" / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match=rf"00000004/{name} is corrupt"):
        Trainer(Net(), PositionData(), cfg(), tmp_path)


def test_last_naming_a_missing_folder_is_named(tmp_path):
    train(tmp_path, until=4)
    (tmp_path / "checkpoints" / "last").write_text("00000777\n")
    with pytest.raises(CheckpointNotFoundError, match=r"checkpoints/last names '00000777'"):
        Trainer(Net(), PositionData(), cfg(), tmp_path)


def test_load_weights_for_eval_and_finetune(tmp_path):
    trained, _ = train(tmp_path, until=4)
    fresh = Net()
    info = load_weights(tmp_path, fresh)
    assert info["step"] == 4  # trained on the trainer's device (a GPU where there is one), loaded on the CPU
    assert all(torch.equal(p.cpu(), q) for p, q in zip(trained.parameters(), fresh.parameters()))
    wider = Net(hidden=32)
    with pytest.raises(CheckpointError, match="00000004/model.safetensors does not fit"):
        load_weights(tmp_path / "checkpoints" / "00000004", wider)
    info = load_weights(tmp_path / "checkpoints" / "00000004" / "model.safetensors", wider, strict=False)
    assert info["mismatched"] == ["net.0.bias", "net.0.weight", "net.3.weight"]
    assert torch.equal(wider.net[3].bias, trained.net[3].bias.cpu())
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint at"):
        load_weights(tmp_path / "nowhere", fresh)


def test_tied_weights_round_trip(tmp_path):
    trained, _ = train(tmp_path, model_cls=Tied, until=4)
    assert len(load_file(tmp_path / "checkpoints" / "00000004" / "model.safetensors")) == 1
    fresh = Tied()
    load_weights(tmp_path, fresh)
    assert torch.equal(fresh.emb.weight, trained.emb.weight.cpu()) and fresh.out.weight is fresh.emb.weight
    resumed = Trainer(Tied(), PositionData(), cfg(), tmp_path)
    assert resumed.step == 4 and torch.equal(resumed.model.out.weight, trained.out.weight)


def test_treecodec_round_trips_types_exactly():
    tree = {"state": {0: {"step": torch.tensor(3.0), "m": torch.randn(2, 3).bfloat16()}},
            "groups": [{"betas": (0.9, 0.99), "params": [0], "fused": None}],
            "rng": (3, tuple(range(5)), None), "np": np.arange(6, dtype=np.uint32).reshape(2, 3)}
    tensors = {}
    text = json.dumps(treecodec.encode(tree, tensors))
    back = treecodec.decode(json.loads(text), tensors)
    assert set(tensors) == {"state/0/step", "state/0/m"}
    assert torch.equal(back["state"][0]["m"], tree["state"][0]["m"]) and back["groups"][0]["betas"] == (0.9, 0.99)
    assert back["rng"] == tree["rng"] and back["np"].dtype == np.uint32
    inline = treecodec.decode(json.loads(json.dumps(treecodec.encode(tree))))
    assert torch.equal(inline["state"][0]["m"], tree["state"][0]["m"])
    assert np.array_equal(inline["np"], tree["np"])
    with pytest.raises(TypeError, match="without pickle"):
        treecodec.encode({"f": object()})

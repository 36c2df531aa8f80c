"""Two processes under torchrun (gloo, CPU): gradients are the mean over ranks, parameters stay identical."""

import json
import os
import subprocess
import sys
import textwrap

import torch
from safetensors.torch import load_file

SCRIPT = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import torch
    from torch import nn
    from safetensors.torch import save_file
    from wmlab.train import Trainer, TrainerConfig, rank_seed

    out = Path(sys.argv[1])

    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))

        def loss(self, batch):
            err = self.net(batch["x"]) - batch["y"]
            return err.pow(2).mean(), {"err": err.abs().mean()}

    def batch(seed, i):
        g = torch.Generator().manual_seed(seed * 1000 + i)
        x = torch.randn(4, 3, generator=g)
        return {"x": x, "y": x.sum(-1, keepdim=True).sin()}

    class Data:
        def __init__(self, seed):
            self.seed, self.position = seed, 0
        def __iter__(self):
            return self
        def __next__(self):
            self.position += 1
            return batch(self.seed, self.position - 1)
        def state_dict(self):
            return {"position": self.position}

    torch.manual_seed(0)
    model = Small()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainerConfig(steps=4, lr=0.05, grad_accum=2, grad_clip=0, precision="fp32", log_every=1,
                           ckpt_every=4, progress=False, tensorboard=False, device="cpu")
    trainer = Trainer(model, Data, config, out / "run")  # Data(seed) is built with this rank's seed
    rank = trainer.dist.rank
    trainer.fit(until=1)
    synced = {n: p.grad.clone() for n, p in model.named_parameters()}

    # The same two micro-batches on this rank alone, without any process group.
    alone = Small()
    alone.load_state_dict(init)
    losses = []
    for i in range(2):
        loss, _ = alone.loss(batch(rank_seed(0, rank), i))
        (loss / 2).backward()
        losses.append(loss.item())
    trainer.fit()
    tensors = {f"synced/{n}": g for n, g in synced.items()}
    tensors.update({f"local/{n}": p.grad for n, p in alone.named_parameters()})
    tensors.update({f"param/{n}": p.detach() for n, p in model.named_parameters()})
    save_file(tensors, str(out / f"rank{rank}.safetensors"))
    (out / f"rank{rank}.json").write_text(json.dumps({"loss": sum(losses) / 2, "world": trainer.dist.world_size}))
    trainer.close()
''')


def test_two_processes_average_gradients_and_agree(tmp_path):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in range(2)]
    info = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [i["world"] for i in info] == [2, 2]
    names = [k.removeprefix("synced/") for k in ranks[0] if k.startswith("synced/")]
    assert names
    for n in names:
        local0, local1 = ranks[0][f"local/{n}"], ranks[1][f"local/{n}"]
        assert not torch.allclose(local0, local1)  # each rank saw different data
        assert torch.equal(ranks[0][f"synced/{n}"], ranks[1][f"synced/{n}"])
        torch.testing.assert_close(ranks[0][f"synced/{n}"], (local0 + local1) / 2, rtol=1e-5, atol=1e-6)
        assert torch.equal(ranks[0][f"param/{n}"], ranks[1][f"param/{n}"])
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # one writer: rank 0
    assert abs(rows[0]["train/loss"] - (info[0]["loss"] + info[1]["loss"]) / 2) < 1e-5  # averaged over ranks
    state = json.loads((run / "checkpoints" / "00000004" / "state.json").read_text())
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert state["data"] == [{"position": 8}, {"position": 8}]  # 4 steps x 2 micro-batches on each rank


def test_only_the_first_process_writes_the_run_files(tmp_path, monkeypatch):
    from wmlab import api

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    _, cfg = api.prepare_run("world_model", preset="debug", run_dir=str(tmp_path / "run"), **{"trainer.steps": 3})
    assert cfg.trainer.steps == 3 and not (tmp_path / "run").exists()  # rank 1 resolves the same config, writes nothing
    monkeypatch.setenv("RANK", "0")
    api.prepare_run("world_model", preset="debug", run_dir=str(tmp_path / "run"), **{"trainer.steps": 3})
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.yaml", "run.json"]  # no leftover tmp
    monkeypatch.setenv("RANK", "1")  # a later process sees the finished folder and resumes from it
    _, again = api.prepare_run("world_model", run_dir=str(tmp_path / "run"))
    assert again == cfg

"""Video pretraining: APV stacking and its bonus, the pretrain job on stores and video files, methods as
config, and pretrain → fine-tune loading the right weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from wmlab import api, jobs
from wmlab import config as C
from wmlab.agents import PRESETS, AgentConfig, DreamerAgent
from wmlab.agents.intrinsic import VideoBonus
from wmlab.config import ConfigError
from wmlab.jobs.warmstart import load_world_model
from wmlab.models import WorldModel, make_config
from wmlab.train.checkpoint import resolve

SPEC = {"image": (16, 16, 3), "action_dim": 2, "action_discrete": False, "num_actions": None, "proprio_dim": None}


def batch_for(b=2, t=6, seed=0, actions=True):
    g = torch.Generator().manual_seed(seed)
    is_first = torch.zeros(b, t, dtype=torch.bool)
    is_first[:, 0] = True
    out = {"image": torch.randint(0, 256, (b, t, 16, 16, 3), dtype=torch.uint8, generator=g), "is_first": is_first,
           "reward": torch.rand(b, t, generator=g), "is_terminal": torch.zeros(b, t, dtype=torch.bool)}
    if actions:
        out["action"] = torch.rand(b, t, 2, generator=g) * 2 - 1
    return out


def grad_sum(module):
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_apv_stack_trains_both_rssms_and_freezes_on_request(one_thread):
    torch.manual_seed(0)
    model = WorldModel(make_config("debug", stack=True), SPEC)
    assert model.af_rssm is not None and model.af_rssm.action_in is None  # action-free
    assert model.rssm.post_embed.in_features == model.feat_dim  # reads the af features
    loss, _ = model.loss(batch_for())
    loss.backward()
    assert grad_sum(model.af_rssm) > 0 and grad_sum(model.rssm) > 0 and grad_sum(model.codec.encoder) > 0

    frozen = WorldModel(make_config("debug", stack=True, stack_freeze=2), SPEC)
    for update in range(3):
        frozen.zero_grad()
        frozen.loss(batch_for())[0].backward()
        if update < 2:
            assert grad_sum(frozen.af_rssm) == 0 and grad_sum(frozen.codec.encoder) == 0
            assert grad_sum(frozen.rssm) > 0
        else:
            assert grad_sum(frozen.af_rssm) > 0
        frozen.after_update()
    # Open-loop prediction and acting run through both RSSMs.
    frozen.eval()
    out = frozen.open_loop(batch_for(t=8), context=3)
    assert out["pred"].shape == (2, 5, 16, 16, 3)
    carry = frozen.initial_carry(1)
    post, carry = frozen.filter_step(carry, torch.zeros(1, 2), {"image": batch_for()["image"][:1, :1]},
                                     torch.tensor([True]))
    assert carry[1] is not None and post.deter.shape == (1, 32)


def test_video_bonus_rewards_novelty_and_checkpoints_its_queue():
    torch.manual_seed(0)
    bonus = VideoBonus(feat_dim=8, k=2, window=2, queue=16, dim=4)
    same = torch.zeros(1, 6, 8)
    same[..., 0] = 1.0
    novel = same.clone()
    novel[0, -1] = 5.0  # one far-away state
    r = bonus(novel)
    assert r.shape == (1, 6) and r[0, -1] > r[0, 1]
    assert int(bonus.filled) == 6
    # Window average: step t averages steps t-1 and t.
    rep = bonus.represent(torch.arange(3.0).view(1, 3, 1).expand(1, 3, 8))
    proj = bonus.proj.sum(0)
    torch.testing.assert_close(rep[0, 1], 0.5 * proj)
    torch.testing.assert_close(rep[0, 2], 1.5 * proj)
    state = {k: v.clone() for k, v in bonus.state_dict().items()}
    assert {"queue", "filled", "ptr", "mean", "proj"} <= set(state)


def test_agent_with_video_bonus_trains_a_second_reward_head(one_thread):
    torch.manual_seed(0)
    cfg = C.resolve(AgentConfig(), PRESETS, "debug", {"intrinsic": "video", "world_model.stack": True, "knn_k": 2})
    agent = DreamerAgent(cfg, SPEC)
    loss, metrics = agent.loss(batch_for())
    assert metrics["wm/intrinsic"] > 0 and "wm/policy_reward" in metrics
    loss.backward()
    assert grad_sum(agent.policy_reward) > 0 and grad_sum(agent.wm.reward_head) > 0
    names = [g["name"] for g in agent.optimizer_groups()]
    assert names[0] == "world_model"
    in_group = {id(p) for p in agent.optimizer_groups()[0]["params"]}
    assert all(id(p) in in_group for p in agent.policy_reward.parameters())


@pytest.fixture(scope="module")
def frames_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "store"
    api.collect(env="dmc:cartpole_balance", out=str(out), episodes=3, max_steps=20, size=(16, 16), workers=1,
                progress=False, split="train")
    api.collect(env="dmc:cartpole_balance", out=str(out), episodes=1, max_steps=20, size=(16, 16), workers=1,
                progress=False, split="test", seed=100)
    return out


def test_pretrain_apv_then_finetune_loads_the_af_rssm(tmp_path, frames_store, one_thread):
    pre = tmp_path / "pre"
    out = api.train("pretrain", preset="debug", method="apv", data=str(frames_store), run_dir=str(pre),
                    **{"trainer.steps": 3, "trainer.ckpt_every": 3, "trainer.eval_every": 0})
    assert out["step"] == 3
    spec = json.loads((pre / "spec.json").read_text())
    assert spec["action_dim"] is None and "action" not in spec["keys"] and "reward" not in spec["keys"]
    saved = C.load(jobs.get("pretrain").config_cls, pre / "config.yaml")
    assert saved.model.action_input == "none" and saved.method == "apv"

    _, cfg = api.prepare_run("dreamer", preset="debug", method="apv", init=str(pre), run_dir=str(tmp_path / "ft"))
    assert cfg.agent.world_model.stack and cfg.agent.intrinsic == "video"
    agent = DreamerAgent(cfg.agent, {**spec, "action_dim": 1, "keys": spec["keys"] + ["action", "reward"]})
    report = load_world_model(agent, str(pre))
    from safetensors.torch import load_file

    tensors = load_file(str(pre / "checkpoints" / "00000003" / "model.safetensors"))
    for name, value in agent.wm.af_rssm.state_dict().items():
        assert torch.equal(value, tensors[f"rssm.{name}"]), name
    assert torch.equal(agent.wm.codec.state_dict()["encoder.layers.0.weight"], tensors["codec.encoder.layers.0.weight"])
    assert any(n.startswith("rssm.") for n in report["new"])  # the action-conditioned RSSM is new
    assert not any(n.startswith("af_rssm.") or n.startswith("codec.") for n in report["new"])


NO_SIMULATOR = """
import sys
SIMULATORS = ("mujoco", "dm_control", "metaworld", "procgen", "gymnasium", "gymnasium_robotics", "minari")
for name in SIMULATORS:
    sys.modules[name] = None  # any import of them now raises ImportError
from wmlab.cli import main
for method in ("apv", "contextwm", "prelar"):
    code = main(["train", "pretrain", f"method={method}", "preset=debug", f"data={sys.argv[1]}",
                 f"run_dir={sys.argv[2]}/{method}", "size=16,16", "length=8", "trainer.steps=2",
                 "trainer.ckpt_every=2", "trainer.eval_every=0", "model.context.depth=4",
                 "model.latent_action.dim=4", "model.latent_action.depth=4", "model.latent_action.units=32"])
    assert code == 0, method
"""


def test_pretrain_reads_video_files_without_a_simulator(tmp_path):
    """Every method pretrains from a folder of video files in a process where MuJoCo, dm_control,
    Meta-World, Procgen and even Gymnasium cannot be imported."""
    videos = tmp_path / "videos"
    videos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        frames = rng.integers(0, 255, (12, 20, 20, 3), dtype=np.uint8)
        imageio.mimwrite(videos / f"clip{i}.gif", list(frames))
    done = subprocess.run([sys.executable, "-c", NO_SIMULATOR, str(videos), str(tmp_path)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    for method in ("apv", "contextwm", "prelar"):
        run = tmp_path / method
        assert (run / "checkpoints" / "last").exists(), method
        spec = json.loads((run / "spec.json").read_text())
        assert spec["action_dim"] is None and tuple(spec["image"]) == (16, 16, 3)
        assert "train/image" in (run / "metrics.jsonl").read_text()
    assert (tmp_path / "apv" / "videos" / "store.json").exists()  # the imported store lives in the run


def test_methods_are_config_and_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        api.prepare_run("pretrain", method="nope", run_dir=str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="action_input=real"):
        api.train("pretrain", preset="debug", method="plain", data=str(tmp_path), run_dir=str(tmp_path / "y"),
                  **{"model.action_input": "real"})
    _, cfg = api.prepare_run("dreamer", preset="debug", run_dir=str(tmp_path / "z"))
    assert cfg.method == "none" and not cfg.agent.world_model.stack


@pytest.mark.parametrize("codes,freeze", [(0, False), (4, False), (0, True)], ids=["continuous", "discrete", "frozen"])
def test_prelar_pretrain_then_finetune_reuses_the_latent_action_model(tmp_path, frames_store, one_thread, codes,
                                                                       freeze):
    pre = tmp_path / "pre"
    sizes = {"model.latent_action.dim": 4, "model.latent_action.depth": 4, "model.latent_action.units": 32,
             "model.latent_action.codes": codes}
    out = api.train("pretrain", preset="debug", method="prelar", data=str(frames_store), run_dir=str(pre),
                    **{"trainer.steps": 3, "trainer.ckpt_every": 3, "trainer.eval_every": 0, **sizes})
    assert "train/latent_action_nce" in out
    _, cfg = api.prepare_run("dreamer", preset="debug", method="prelar", init=str(pre), run_dir=str(tmp_path / "ft"),
                             **{k.replace("model.", "agent.world_model."): v for k, v in sizes.items()},
                             **{"agent.world_model.latent_action.freeze": freeze})
    spec = json.loads((pre / "spec.json").read_text())
    agent = DreamerAgent(cfg.agent, {**spec, "action_dim": 1})
    report = load_world_model(agent, str(pre))
    # New: the action encoder, and the reward head, which pretraining on video had no reward to train.
    assert any(n.startswith("actions.action_encoder.") for n in report["new"])
    assert all(n.startswith(("actions.action_encoder.", "reward_head.")) for n in report["new"])
    if codes:  # the pretrained codebook came along
        saved = load_file(str(resolve(pre) / "model.safetensors"))
        key = next(k for k in saved if k.endswith("actions.lam.vq.embed"))
        torch.testing.assert_close(agent.wm.actions.lam.vq.embed, saved[key])
    loss, metrics = agent.loss({**batch_for(), "image": batch_for()["image"], "action": torch.rand(2, 6, 1)})
    assert "wm/latent_action_align" in metrics and torch.isfinite(loss)
    assert ("wm/latent_action_nce" in metrics) != freeze  # a fixed LAM trains no InfoNCE
    assert all(p.requires_grad != freeze for p in agent.wm.actions.lam.parameters())
    obs = {"image": np.zeros((16, 16, 3), np.uint8)}
    action, _ = agent.act(obs, None)
    assert action.shape == (1,)


def test_contextwm_pretrain_then_finetune_keeps_the_codec(tmp_path, frames_store, one_thread):
    pre = tmp_path / "pre"
    api.train("pretrain", preset="debug", method="contextwm", data=str(frames_store), run_dir=str(pre),
              **{"trainer.steps": 2, "trainer.ckpt_every": 2, "trainer.eval_every": 2, "model.context.depth": 4})
    assert (pre / "metrics.jsonl").read_text().count("open_loop/psnr_1_10") == 1
    _, cfg = api.prepare_run("dreamer", preset="debug", method="contextwm", init=str(pre),
                             run_dir=str(tmp_path / "ft"), **{"agent.world_model.context.depth": 4})
    assert cfg.agent.world_model.codec == "contextwm" and cfg.agent.intrinsic == "video"
    assert cfg.agent.world_model.stack  # APV's recipe: a new action-conditioned RSSM on the pretrained one
    spec = json.loads((pre / "spec.json").read_text())
    agent = DreamerAgent(cfg.agent, {**spec, "action_dim": 1})
    report = load_world_model(agent, str(pre))
    assert not any(n.startswith(("codec.", "af_rssm.")) for n in report["new"])
    assert any(n.startswith("rssm.action_in") for n in report["new"]) and report["unused"] == []
    # Fine-tuning it without its method is refused, naming the method; loaded anyway, the parts that would be
    # dropped are listed as unused.
    with pytest.raises(ConfigError, match="method=contextwm"):
        api.train("dreamer", preset="debug", init=str(pre), run_dir=str(tmp_path / "plain_ft"))
    _, plain = api.prepare_run("dreamer", preset="debug", run_dir=str(tmp_path / "plain_ft2"))
    dropped = load_world_model(DreamerAgent(plain.agent, {**spec, "action_dim": 1}), str(pre))["unused"]
    assert dropped and any(n.startswith("codec.context") for n in dropped)
    result = api.evaluate(str(pre), windows=2, context=2, horizon=4)
    assert result["PSNR steps 1-10 (model)"] > 0


@pytest.mark.parametrize("method", ["plain", "apv", "contextwm", "prelar"])
def test_each_method_runs_pretrain_then_online_finetune(tmp_path, frames_store, one_thread, method):
    sizes = {"context.depth": 4, "latent_action.dim": 4, "latent_action.depth": 4, "latent_action.units": 32}
    pre, ft = tmp_path / "pre", tmp_path / "ft"
    api.train("pretrain", preset="debug", method=method, data=str(frames_store), run_dir=str(pre),
              **{"trainer.steps": 2, "trainer.ckpt_every": 2, "trainer.eval_every": 0,
                 **{f"model.{k}": v for k, v in sizes.items()}})
    out = api.train("dreamer", preset="debug", method=method, init=str(pre), run_dir=str(ft), env_steps=100,
                    prefill=50, **{f"agent.world_model.{k}": v for k, v in sizes.items()})
    assert out["env_steps"] == 100 and out["step"] > 0
    report = json.loads((ft / "init.json").read_text())
    assert report["loaded"] > 0 and report["mismatched"] == []
    if method == "plain":  # the same RSSM; only its action input and the reward head are new
        assert "rssm.action_in.weight" in report["new"] and report["agent_new"] == ["task"]
        assert all(n.startswith(("rssm.action_in", "reward_head.")) for n in report["new"])


def test_finetune_after_init_freezes_the_stack_and_takes_the_bonus_from_the_action_free_posterior(
        tmp_path, frames_store, one_thread):
    pre = tmp_path / "pre"
    api.train("pretrain", preset="debug", method="apv", data=str(frames_store), run_dir=str(pre),
              **{"trainer.steps": 3, "trainer.ckpt_every": 3, "trainer.eval_every": 0})
    _, cfg = api.prepare_run("dreamer", preset="debug", method="apv", init=str(pre), run_dir=str(tmp_path / "ft"),
                             **{"agent.world_model.stack_freeze": 2, "agent.knn_k": 2})
    spec = json.loads((pre / "spec.json").read_text())
    agent = DreamerAgent(cfg.agent, {**spec, "action_dim": 1, "keys": spec["keys"] + ["action", "reward"]})
    report = load_world_model(agent, str(pre))
    assert int(agent.wm.updates) == 0  # pretraining's 3 updates do not use up the fine-tuning freeze
    assert any(n.startswith("reward_head.") for n in report["new"])  # video had no reward to train it
    assert {"policy_reward", "task"} <= set(report["agent_new"])  # the actor-critic is "task"
    seen = []
    forward = agent.bonus.forward
    agent.bonus.forward = lambda feat: (seen.append(feat.detach()), forward(feat))[1]
    batch = {**batch_for(), "action": torch.rand(2, 6, 1)}
    for update in range(3):
        agent.zero_grad()
        loss, _ = agent.loss(batch)
        loss.backward()
        # The bonus reads the action-free model's posterior, during the freeze as after it.
        assert torch.equal(seen[-1], agent.wm.af_rssm.features(agent.wm.last_af_post))
        frozen = grad_sum(agent.wm.af_rssm) == 0 and grad_sum(agent.wm.codec.encoder) == 0
        assert frozen == (update < 2), update
        assert grad_sum(agent.wm.rssm) > 0
        agent.after_update()


def test_video_bonus_queue_is_a_fifo_and_the_bonus_is_the_kth_neighbour_distance():
    torch.manual_seed(0)
    bonus = VideoBonus(feat_dim=6, k=2, window=1, queue=5, dim=4)
    feats = [torch.randn(1, 3, 6) for _ in range(3)]
    reps = [bonus.represent(f)[0] for f in feats]  # window 1: each step's own projection [3, 4]
    bonus(feats[0])
    bonus(feats[1])
    # Six representations went into a queue of five: the oldest was overwritten, the pointer wrapped.
    assert int(bonus.filled) == 5 and int(bonus.ptr) == 1
    torch.testing.assert_close(bonus.queue, torch.cat([reps[1][2:], reps[0][1:], reps[1][:2]]))
    # The bonus of a new batch: distance to its k-th nearest neighbour among queue and batch (itself
    # excluded), over the running mean of that distance.
    bank = torch.cat([bonus.queue, reps[2]])
    kth = torch.cdist(reps[2], bank).sort(1).values[:, bonus.k]
    restored = VideoBonus(feat_dim=6, k=2, window=1, queue=5, dim=4)  # other random projection...
    restored.load_state_dict(bonus.state_dict())  # ...until the checkpointed buffers are loaded
    bonus.eval()
    restored.eval()
    before = {k: v.clone() for k, v in bonus.state_dict().items()}
    got = bonus(feats[2])[0]
    torch.testing.assert_close(got, kth / bonus.mean)
    torch.testing.assert_close(restored(feats[2]), bonus(feats[2]))
    assert all(torch.equal(before[k], v) for k, v in bonus.state_dict().items())  # eval mode changes nothing


@pytest.mark.parametrize("preset", ["dreamerv2", "dreamerv2_metaworld"])
def test_pretrain_and_finetune_presets_build_the_same_world_model(tmp_path, preset):
    """A world model pretrained with preset=P is the one `wmlab train dreamer preset=P init=` fine-tunes."""
    _, pre = api.prepare_run("pretrain", preset=preset, method="plain", run_dir=str(tmp_path / "pre"))
    _, ft = api.prepare_run("dreamer", preset=preset, run_dir=str(tmp_path / "ft"))
    pre_model = C.to_dict(pre.model)
    ft_model = C.to_dict(ft.agent.world_model)
    for key in ("rssm", "cnn", "heads", "loss", "norm", "act", "image_loss", "reward_loss", "proprio_symlog"):
        assert pre_model[key] == ft_model[key], key
    if preset == "dreamerv2_metaworld":
        assert ft.action_repeat == 1 and ft.time_limit == 500 and ft_model["rssm"]["deter"] == 1024


def test_pretrain_writes_its_spec_before_training(tmp_path, frames_store, monkeypatch, one_thread):
    from wmlab.train import Trainer

    seen, real = [], Trainer.fit
    monkeypatch.setattr(Trainer, "fit", lambda self, *a, **k: seen.append(
        (Path(self.run_dir) / "spec.json").exists()) or real(self, *a, **k))
    api.train("pretrain", preset="debug", method="apv", data=str(frames_store), run_dir=str(tmp_path / "pre"),
              **{"trainer.steps": 1, "trainer.ckpt_every": 1, "trainer.eval_every": 0})
    assert seen == [True]  # a fine-tuning run can start from its checkpoints while it trains


def test_the_stacked_action_free_model_keeps_learning_its_own_prior(one_thread):
    # From a zero initial state the action-free prior's output layer is reached by its own KL terms only.
    torch.manual_seed(0)
    model = WorldModel(make_config("debug", stack=True, **{"rssm.initial": "zeros"}), SPEC)
    model.loss(batch_for())[0].backward()
    assert grad_sum(model.af_rssm.prior_out) > 0


def test_the_policy_reward_head_trains_the_world_model_features(one_thread):
    quiet = {f"world_model.loss.{k}": 0.0 for k in ("image", "reward", "cont", "kl_dyn", "kl_rep")}
    torch.manual_seed(0)
    cfg = C.resolve(AgentConfig(), PRESETS, "debug", {"intrinsic": "video", "world_model.stack": True, "knn_k": 2,
                                                       **quiet})
    agent = DreamerAgent(cfg, SPEC)
    torch.nn.init.normal_(agent.policy_reward.out.weight, std=0.1)  # as after some training (it starts at zero)
    agent.loss(batch_for())[0].backward()  # the world model's own losses are off: what reaches it is this head's
    assert grad_sum(agent.policy_reward) > 0 and grad_sum(agent.wm.codec.encoder) > 0

"""The Dreamer agent: gradient isolation, presets, Plan2Explore, online/offline/imagined runs, exact resume,
evaluation table."""

import csv
import json
import operator
from pathlib import Path

import numpy as np
import pytest
import torch

import wmlab.eval
from wmlab import api
from wmlab import config as C
from wmlab.agents import PRESETS, REWARDS, AgentConfig, DreamerAgent
from wmlab.config import ConfigError
from wmlab.data.store import EpisodeStore
from wmlab.train import load_weights

SPEC = {"image": (16, 16, 3), "action_dim": 2, "action_discrete": False, "num_actions": None, "proprio_dim": None}
DISCRETE = {**SPEC, "action_dim": None, "action_discrete": True, "num_actions": 3}


def agent_for(spec, preset="debug", **overrides):
    torch.manual_seed(0)
    return DreamerAgent(C.resolve(AgentConfig(), PRESETS, preset, overrides), spec)


def batch_for(spec, b=3, t=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    is_first = torch.zeros(b, t, dtype=torch.bool)
    is_first[:, 0] = True
    out = {"image": torch.randint(0, 256, (b, t, 16, 16, 3), dtype=torch.uint8, generator=g),
           "reward": torch.rand(b, t, generator=g), "is_first": is_first,
           "is_terminal": torch.zeros(b, t, dtype=torch.bool)}
    if spec["action_discrete"]:
        out["action"] = torch.randint(0, spec["num_actions"], (b, t), generator=g)
    else:
        out["action"] = torch.rand(b, t, spec["action_dim"], generator=g) * 2 - 1
    return out


def grads(module):
    return [p.grad for p in module.parameters() if p.requires_grad]


def has_grad(module):
    return any(g is not None and g.abs().sum() > 0 for g in grads(module))


def no_grad(module):
    return all(g is None or g.abs().sum() == 0 for g in grads(module))


def behaviour_loss(agent, batch):
    post, _ = agent.wm.observe(batch)
    start = post.detach().flatten()
    fn = REWARDS.get("task")
    loss, metrics = agent.task.loss(agent.wm, start, torch.ones(start.deter.shape[0]),
                                    lambda f, a: fn(agent, f, a), agent.encode_action)
    return loss, metrics


@pytest.mark.parametrize("spec", [SPEC, DISCRETE], ids=["continuous", "discrete"])
@pytest.mark.parametrize("grad,dist", [("reinforce", "normal"), ("dynamics", "normal"),
                                       ("dynamics", "trunc_normal"), ("auto", "trunc_normal")])
def test_actor_critic_sends_no_gradient_into_the_world_model(one_thread, spec, grad, dist):
    agent = agent_for(spec, **{"behavior.actor.grad": grad, "behavior.actor.dist": dist})
    loss, metrics = behaviour_loss(agent, batch_for(spec))
    loss.backward()
    assert no_grad(agent.wm), "the actor-critic loss reached the world model"
    assert has_grad(agent.task.actor) and has_grad(agent.task.critic)
    assert all(p.grad is None for p in agent.task.slow_critic.parameters())
    assert torch.isfinite(metrics["return"]) and metrics["entropy"] > 0


@pytest.mark.parametrize("grad", ["reinforce", "dynamics"])
def test_full_loss_gives_the_world_model_only_its_own_gradient(one_thread, grad):
    agent = agent_for(SPEC, **{"behavior.actor.grad": grad})
    batch = batch_for(SPEC)
    torch.manual_seed(1)
    agent.wm.loss(batch)[0].backward()
    own = {n: p.grad.clone() for n, p in agent.wm.named_parameters() if p.grad is not None}
    assert own and any(g.abs().sum() > 0 for g in own.values())
    agent.zero_grad()
    torch.manual_seed(1)  # the same posterior samples; imagination samples after them
    agent.loss(batch)[0].backward()
    assert has_grad(agent.task.actor) and has_grad(agent.task.critic)
    for name, p in agent.wm.named_parameters():
        if name in own:
            torch.testing.assert_close(p.grad, own[name], rtol=1e-5, atol=1e-7, msg=name)
        else:
            assert p.grad is None or p.grad.abs().sum() == 0, name


@pytest.mark.parametrize("grad", ["reinforce", "dynamics"])
def test_a_terminal_start_state_weighs_nothing(one_thread, grad):
    agent = agent_for(SPEC, **{"behavior.actor.grad": grad})
    post, _ = agent.wm.observe(batch_for(SPEC))
    start = post.detach().flatten()
    fn = REWARDS.get("task")

    def loss_from(cont0):
        agent.zero_grad()
        loss, _ = agent.task.loss(agent.wm, start, cont0, lambda f, a: fn(agent, f, a), agent.encode_action)
        loss.backward()
        return float(loss.detach())

    n = start.deter.shape[0]
    assert loss_from(torch.zeros(n)) == 0.0  # every start ends its episode: nothing to learn from
    assert no_grad(agent.task.actor) and no_grad(agent.task.critic)
    assert loss_from(torch.ones(n)) != 0.0
    assert has_grad(agent.task.actor) and has_grad(agent.task.critic)


def test_plan2explore_scores_the_clipped_action_the_ensemble_learned_from(one_thread):
    agent = agent_for(SPEC, **{"explore": "plan2explore"})
    post, _ = agent.wm.observe(batch_for(SPEC))
    feat = agent.wm.features(post)
    actions = torch.rand(3, 5, 2) * 2 - 1
    outside = actions.sign() * 3.0  # a Normal policy's samples can leave [-1, 1]
    score = REWARDS.get("plan2explore")
    torch.testing.assert_close(score(agent, feat, outside), score(agent, feat, actions.sign()))
    assert not torch.allclose(score(agent, feat, outside), score(agent, feat, actions))


def _start(agent, spec=SPEC):
    post, _ = agent.wm.observe(batch_for(spec))
    return post.detach().flatten()


@pytest.mark.parametrize("spec,dist", [(SPEC, "normal"), (SPEC, "trunc_normal"), (DISCRETE, "normal")],
                         ids=["normal", "trunc_normal", "discrete"])
def test_reinforce_scores_the_imagined_actions_with_the_actor_on_detached_features(one_thread, spec, dist):
    agent = agent_for(spec, **{"behavior.actor.dist": dist})
    start = _start(agent, spec)
    with torch.no_grad():
        feat, actions, ents, logp = agent.task._imagine(agent.wm, start, agent.encode_action, True, score=True)
    assert feat.shape[1] == actions.shape[1] + 1 and not feat.requires_grad and not actions.requires_grad
    again = agent.task.policy(feat[:, :-1].detach())  # the actor run once more over the states it acted in
    torch.testing.assert_close(logp, again.log_prob(actions), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ents, again.entropy(), rtol=1e-5, atol=1e-5)
    logp.sum().backward()
    assert has_grad(agent.task.actor) and no_grad(agent.wm)


def test_dynamics_entropy_bonus_reads_detached_features(one_thread):
    """With zero reward and a zero critic the dynamics loss is the entropy bonus alone; its actor gradient is
    that of the policy's entropy on detached imagined features (not back through the dynamics)."""
    agent = agent_for(SPEC, **{"behavior.actor.grad": "dynamics", "behavior.actor.entropy": 1.0,
                               "behavior.return_norm": "none"})
    task, start = agent.task, _start(agent)
    n = start.deter.shape[0]
    zero = lambda f, a: torch.zeros(f.shape[:2])  # noqa: E731
    torch.manual_seed(5)
    task.loss(agent.wm, start, torch.ones(n), zero, agent.encode_action)[0].backward()
    got = [p.grad.clone() for p in task.actor.parameters()]
    task.zero_grad()
    torch.manual_seed(5)  # the same imagined trajectory
    with torch.no_grad():
        feat, _, _, _ = task._imagine(agent.wm, start, agent.encode_action, True, score=False)
        cont = agent.wm.cont(feat).float()
        disc = task.cfg.discount * torch.cat([torch.ones(n, 1), cont[:, 1:]], 1)
        weight = torch.cumprod(torch.cat([torch.ones(n, 1), disc[:, 1:-1]], 1), 1)
    (-(weight * task.policy(feat[:, :-1]).entropy()).mean()).backward()
    for g, p in zip(got, task.actor.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("grad", ["reinforce", "dynamics"])
def test_updates_leave_no_tensors_behind(one_thread, grad):
    """Repeated full updates keep the number of live tensors fixed: nothing of a pass outlives it."""
    import gc

    agent = agent_for(SPEC, **{"behavior.actor.grad": grad})
    opt = torch.optim.AdamW(agent.parameters(), lr=1e-4)
    batch = batch_for(SPEC)

    def update():
        with torch.autocast("cpu", torch.bfloat16):
            loss, _ = agent.loss(batch)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        gc.collect()
        return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))

    counts = [update() for _ in range(4)]  # the first creates optimizer state and gradients
    assert counts[1] == counts[2] == counts[3], counts


def test_world_model_loss_sends_no_gradient_into_actor_or_critic(one_thread):
    agent = agent_for(SPEC, **{"explore": "plan2explore"})
    agent.wm.loss(batch_for(SPEC))[0].backward()
    assert has_grad(agent.wm)
    for part in (agent.task, agent.explorer):
        assert all(p.grad is None for p in part.parameters())


def test_full_loss_trains_every_part_and_slow_critic_follows(one_thread):
    agent = agent_for(SPEC)
    opt = torch.optim.AdamW(agent.optimizer_groups(), lr=1e-3)
    names = [g["name"] for g in agent.optimizer_groups()]
    assert names == ["world_model", "task_actor", "task_critic"]
    slow_before = [p.clone() for p in agent.task.slow_critic.parameters()]
    loss, metrics = agent.loss(batch_for(SPEC))
    assert {"wm/image", "wm/kl_dyn", "task/actor_loss", "task/critic_loss", "task/return_scale"} <= set(metrics)
    loss.backward()
    opt.step()
    agent.after_update()
    assert int(agent.task.updates) == 1 and int(agent.task.return_norm.count) == 1
    moved = [not torch.equal(a, b) for a, b in zip(slow_before, agent.task.slow_critic.parameters())]
    assert any(moved), "the slow critic did not move toward the critic"


def test_dreamerv2_preset_is_config_of_the_same_classes(one_thread):
    agent = agent_for(SPEC, "dreamerv2")
    cfg = agent.cfg
    wl = cfg.world_model.loss
    assert wl.kl_dyn == 0.8 and wl.kl_rep == 0.2 and wl.free_avg and wl.image == 0.5 and wl.proprio == 0.5
    assert cfg.world_model.reward_loss == "mse" and agent.wm.reward_head.out.out_features == 1
    assert not cfg.world_model.proprio_symlog
    assert cfg.behavior.critic.loss == "mse" and cfg.behavior.actor.dist == "trunc_normal"
    assert cfg.behavior.return_norm == "none" and cfg.world_model.heads.units == 400
    assert len(agent.task.actor.hidden) == 4
    # DreamerV2's GRU keeps its LayerNorm although no other layer has one.
    assert isinstance(agent.wm.rssm.gru_norm, torch.nn.LayerNorm) and isinstance(agent.wm.rssm.in_norm,
                                                                                 torch.nn.Identity)
    # Every norm is wmlab's (exact scale/bias gradients under bf16), none a plain torch one.
    assert not [name for name, m in agent.named_modules() if type(m) is torch.nn.LayerNorm]
    # Its truncated Normal: std = 2·sigmoid(·) + 0.1, starting at 1.1.
    feat = torch.zeros(3, agent.wm.feat_dim)
    dist = agent.task.policy(feat)
    torch.testing.assert_close(dist.std, torch.full_like(dist.std, 1.1), atol=0.05, rtol=0)
    wide = type(dist)(torch.cat([torch.zeros(1, 2), torch.full((1, 2), 50.0)], 1), False, 0.1, 2.1,
                      dist="trunc_normal", std_bias=0.0)
    torch.testing.assert_close(wide.std, torch.full((1, 2), 2.1))
    # actor.grad=auto: backprop through the dynamics for continuous actions, REINFORCE for discrete ones.
    assert cfg.behavior.actor.grad == "auto" and agent.task.grad == "dynamics"
    assert agent_for(DISCRETE, "dreamerv2").task.grad == "reinforce"
    explorer = agent_for(SPEC, "dreamerv2", explore="plan2explore").ensemble  # the world model's units
    assert isinstance(explorer.act, torch.nn.ELU) and not explorer.norm
    from wmlab.jobs.dreamer import PRESETS as JOB_PRESETS

    assert JOB_PRESETS["dreamerv2"]["pretrain"] == 100  # updates right after the prefill
    loss, metrics = agent.loss(batch_for(SPEC))
    loss.backward()
    assert torch.isfinite(loss) and has_grad(agent.task.actor) and has_grad(agent.wm)


def test_dynamics_gradient_reaches_the_actor_only_through_imagined_states_and_actions(one_thread):
    # With the advantage detached (REINFORCE) the actor's gradient comes from log-probabilities alone; under
    # dynamics it is the return's own derivative, so the two gradients differ on the same samples.
    got = {}
    for grad in ("reinforce", "dynamics"):
        agent = agent_for(SPEC, **{"behavior.actor.grad": grad, "behavior.actor.dist": "trunc_normal",
                                   "behavior.actor.entropy": 0.0})
        torch.manual_seed(3)
        behaviour_loss(agent, batch_for(SPEC))[0].backward()
        got[grad] = torch.cat([g.flatten() for g in grads(agent.task.actor)])
    assert got["reinforce"].abs().sum() > 0 and got["dynamics"].abs().sum() > 0
    assert not torch.allclose(got["reinforce"], got["dynamics"])


def test_plan2explore_ensemble_and_two_behaviours(one_thread):
    agent = agent_for(SPEC, **{"explore": "plan2explore"})
    batch = batch_for(SPEC)
    # Disagreement reward: zero at the start state, positive after, from the members' spread.
    post, _ = agent.wm.observe(batch)
    feat = agent.wm.features(post)
    actions = torch.rand(3, 5, 2)
    reward = REWARDS.get("plan2explore")(agent, feat, actions)
    assert reward.shape == (3, 6) and torch.all(reward[:, 0] == 0) and torch.all(reward[:, 1:] > 0)
    # The ensemble trains only from its own loss; behaviours leave it untouched.
    _, metrics = agent.explorer.loss(agent.wm, post.detach().flatten(), torch.ones(18),
                                     agent._explore_reward, agent.encode_action, (agent.ensemble,))
    loss = agent.explorer.loss(agent.wm, post.detach().flatten(), torch.ones(18), agent._explore_reward,
                               agent.encode_action, (agent.ensemble,))[0]
    loss.backward()
    assert no_grad(agent.ensemble) and no_grad(agent.wm) and has_grad(agent.explorer.actor)
    agent.zero_grad()
    total, metrics = agent.loss(batch)
    total.backward()
    assert has_grad(agent.ensemble) and has_grad(agent.task.actor) and has_grad(agent.explorer.actor)
    assert metrics["explore/imag_reward"] > 0
    assert [g["name"] for g in agent.optimizer_groups()][-1] == "ensemble"


def test_imagined_starts_need_no_data(one_thread):
    agent = agent_for(DISCRETE, **{"train_world_model": False})
    loss, metrics = agent.loss({"starts": 12})
    loss.backward()
    assert no_grad(agent.wm) and has_grad(agent.task.actor)
    assert [g["name"] for g in agent.optimizer_groups()] == ["task_actor", "task_critic"]


def test_act_carries_state_and_respects_the_action_space(one_thread):
    for spec in (SPEC, DISCRETE):
        agent = agent_for(spec)
        obs = {"image": np.zeros((16, 16, 3), np.uint8)}
        action, carry = agent.act(obs, None)
        action2, carry2 = agent.act(obs, carry)
        if spec["action_discrete"]:
            assert action.dtype == np.int64 and 0 <= int(action) < 3
        else:
            assert action.shape == (2,) and np.all(np.abs(action) <= 1)
        assert carry2[0][0].deter.shape == (1, agent.wm.rssm.deter_dim)
    # Sampled continuous actions (std near 1) often fall outside [-1, 1]: the env gets them clipped, and the
    # world model's filter must be fed that same clipped action, as in the replay it trains on.
    agent = agent_for(SPEC)
    assert agent.cfg.world_model.action_input == "real"
    carry = None
    for _ in range(30):
        action, carry = agent.act(obs, carry)
        assert np.all(np.abs(action) <= 1)
        np.testing.assert_array_equal(carry[1][0].numpy(), action)
    torch.manual_seed(0)
    feat = agent.wm.features(agent.imagined_starts(64))
    outside = (agent.task.policy(feat).sample().abs() > 1).float().mean()
    assert outside > 0.05  # the clipping above was exercised


def test_bad_agent_settings_are_clear_errors(one_thread):
    with pytest.raises(ValueError, match="unknown reward 'nope'"):
        agent_for(SPEC, **{"reward": "nope"})
    with pytest.raises(ValueError, match="needs actions"):
        DreamerAgent(AgentConfig(), {**SPEC, "action_dim": None})
    with pytest.raises(ConfigError, match="init="):
        api.train("dreamer", preset="debug", run_dir="/nonexistent/x", start="imagined")
    with pytest.raises(ConfigError, match="'start' must be one of posterior, imagined, got 'prior'"):
        api.train("dreamer", preset="debug", run_dir="/nonexistent/x", start="prior")
    for key, value in (("behavior.actor.dist", "beta"), ("behavior.actor.grad", "both"),
                       ("behavior.critic.loss", "huber")):
        with pytest.raises(ConfigError, match=rf"^config key '{key}' must be one of .*, got '{value}'$"):
            agent_for(SPEC, **{key: value})
    with pytest.raises(ValueError, match="^behavior.horizon=0 must be >= 1$"):
        agent_for(SPEC, **{"behavior.horizon": 0})
    # the same check for a config built in Python, not through overrides
    for group, key, value in (("behavior.critic", "loss", "huber"), ("", "explore", "curious"),
                              ("", "intrinsic", "rnd"), ("world_model", "reward_loss", "l1")):
        cfg = AgentConfig()
        setattr(operator.attrgetter(group)(cfg) if group else cfg, key, value)
        name = f"{group}.{key}" if group else key
        with pytest.raises(ConfigError, match=rf"^config key '{name}' must be one of .*, got '{value}'$"):
            DreamerAgent(cfg, SPEC)


# ------------------------------------------------------------------------------------------ runs
def _weights(run_dir):
    from safetensors.torch import load_file

    from wmlab.train import checkpoint as ckpt

    return load_file(str(ckpt.resolve(run_dir) / "model.safetensors"))


def test_online_run_then_resume_equals_an_uninterrupted_run(tmp_path, one_thread):
    settings = {"env_steps": 250, "prefill": 50}
    straight = api.train("dreamer", preset="debug", run_dir=str(tmp_path / "a"), **settings)
    assert straight["env_steps"] == 250 and straight["step"] > 0
    assert np.isfinite(straight["eval/return_mean"])

    api.train("dreamer", preset="debug", run_dir=str(tmp_path / "b"), **{**settings, "env_steps": 150})
    # A crash after the checkpoint left an extra episode in the replay: resuming drops and re-collects it.
    store = EpisodeStore(tmp_path / "b" / "replay", mode="a")
    eid = store.ids()[-1]
    store.add(store.load(eid), {"index": 99, "seed": 1, "policy": "task"})
    resumed = api.train("dreamer", run_dir=str(tmp_path / "b"), env_steps=250)
    assert resumed["step"] == straight["step"] and resumed["episodes"] == straight["episodes"]
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    assert len(EpisodeStore(tmp_path / "b" / "replay")) == len(EpisodeStore(tmp_path / "a" / "replay"))

    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "eval/return_mean" in r]
    assert [r["env_step"] for r in evals] == [150, 250]
    assert any("train/wm/image" in r for r in rows) and any("episode/return" in r for r in rows)
    videos = sorted(p.name for p in (tmp_path / "a" / "videos").iterdir())
    assert any(v.startswith("eval_policy") for v in videos) and any(v.startswith("eval_open_loop") for v in videos)


def test_offline_imagined_and_eval_table(tmp_path, one_thread, capsys):
    data = tmp_path / "store"
    api.collect(env="dmc:cartpole_balance", out=str(data), episodes=2, max_steps=20, size=(16, 16), workers=1,
                progress=False)
    offline = tmp_path / "runs" / "offline"
    out = api.train("dreamer", preset="debug", run_dir=str(offline), data=str(data), online=False,
                    **{"trainer.steps": 4, "trainer.ckpt_every": 4})
    assert out["step"] == 4

    # start=imagined: no dataset, the world model from init= stays as it was, the policy learns.
    imagined = tmp_path / "runs" / "imagined"
    api.train("dreamer", preset="debug", run_dir=str(imagined), init=str(offline), start="imagined",
              online=False, **{"trainer.steps": 3, "trainer.ckpt_every": 3, "agent.train_world_model": False})
    before, after = _weights(offline), _weights(imagined)
    wm_keys = [k for k in before if k.startswith("wm.") and k != "wm.updates"]
    assert wm_keys and all(torch.equal(before[k], after[k]) for k in wm_keys)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("task.actor."))
    assert json.loads((imagined / "init.json").read_text())["new"] == []

    result = api.evaluate(str(imagined), episodes=2)
    assert result["episodes"] == 2 and len(result["returns"]) == 2 and result["videos"]
    assert np.isclose(result["return_mean"], np.mean(result["returns"]))
    from_cli = api.evaluate(str(offline), episodes="1", sample="false")  # strings, as the CLI passes them
    assert from_cli["episodes"] == 1 and from_cli["policy"] == "mode"
    # The debug preset cuts episodes to 25 steps: the 1000-step reference does not apply, given values do.
    assert from_cli["normalized"] is None
    given = api.evaluate(str(offline), episodes="1", score_random="0", score_expert="50", table=str(tmp_path / "t.csv"))
    assert given["normalized"] == pytest.approx(given["return_mean"] / 50)
    with open(tmp_path / "runs" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == [str(imagined), str(offline)]
    assert json.loads((imagined / "eval.json").read_text())["checkpoint step"] == 3
    other = tmp_path / "other.csv"  # a table of something else is refused, not appended to
    other.write_text("name,score\na,1\n")
    with pytest.raises(ValueError, match="other.csv has the columns name,score"):
        api.evaluate(str(offline), episodes=1, table=str(other))
    assert other.read_text() == "name,score\na,1\n"

    # Several runs: each evaluated alike, then pooled per setting over seeds (the imagined-start run is another
    # setting); `wmlab eval a b ...` does the same.
    seed1 = tmp_path / "runs" / "offline_s1"
    api.train("dreamer", preset="debug", run_dir=str(seed1), data=str(data), online=False,
              **{"trainer.steps": 4, "trainer.ckpt_every": 4, "trainer.seed": 1})
    both = api.evaluate([str(offline), str(seed1), str(imagined)], episodes=2, videos=0)
    each = {r["run"]: r for r in both["runs"]}
    assert list(each) == [str(offline), str(seed1), str(imagined)]
    assert all(r["episodes"] == 2 for r in each.values())
    (label, pooled), (other_label, alone) = sorted(both["over seeds"].items(), key=lambda kv: -kv[1]["runs"])
    means = [each[str(offline)]["return_mean"], each[str(seed1)]["return_mean"]]
    assert pooled["runs"] == 2 and pooled["episodes"] == 4 and pooled["checkpoint steps"] == [4, 4]
    assert pooled["return_mean"] == pytest.approx(np.mean(means))
    assert pooled["return_std"] == pytest.approx(np.std(means))
    assert pooled["return_std_episodes"] == pytest.approx(
        np.std(each[str(offline)]["returns"] + each[str(seed1)]["returns"]))
    assert "start=imagined" in other_label and alone["runs"] == 1 and alone["return_std"] == 0.0
    genie_like = _fake_genie_run(tmp_path / "genie_like")
    with pytest.raises(ConfigError, match=r"one job at a time; given .*offline \(dreamer\), .*genie_like \(genie\)"):
        api.evaluate([str(offline), str(genie_like)], episodes=1)
    from wmlab.cli import main

    capsys.readouterr()
    assert main(["eval", str(offline), str(seed1), "episodes=1", "videos=0"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in printed["runs"]] == [str(offline), str(seed1)]
    assert [v["runs"] for v in printed["over seeds"].values()] == [2]


def _fake_genie_run(folder):
    folder.mkdir()
    (folder / "run.json").write_text('{"job": "genie", "preset": "tiny"}')
    return folder


def test_score_normaliser():
    from wmlab.eval.scores import normalize

    assert normalize("x:y", 50.0, random=0.0, expert=100.0) == 0.5
    assert normalize("x:unknown", 50.0) is None
    # The reference table, for episodes played as it was measured (action repeat 2, full-length episodes) only.
    ref = json.loads((Path(wmlab.eval.__file__).parent / "reference_scores.json").read_text())["dmc:cartpole_balance"]
    mid = (ref["random"] + ref["expert"]) / 2
    assert normalize("dmc:cartpole_balance", mid, action_repeat=2, time_limit=None) == pytest.approx(0.5)
    assert normalize("dmc:cartpole_balance", mid, action_repeat=2, time_limit=25) is None
    assert normalize("dmc:cartpole_balance", mid, action_repeat=4, time_limit=None) is None
    assert normalize("dmc:cartpole_balance", 50.0, 0.0, 100.0, action_repeat=4, time_limit=25) == 0.5
    with pytest.raises(ValueError, match="equal"):
        normalize("x:y", 1.0, random=3.0, expert=3.0)


def test_compare_plots_mean_over_seeds(tmp_path):
    from wmlab.eval.curves import compare

    for seed, offset in ((0, 0.0), (1, 2.0)):
        run = tmp_path / f"s{seed}"
        run.mkdir()
        (run / "config.yaml").write_text("env: dmc:walker_walk\nmethod: none\n")
        (run / "run.json").write_text('{"job": "dreamer", "preset": "small"}')
        rows = [{"step": i, "env_step": 1000 * i, "eval/return_mean": 10.0 * i + offset} for i in (1, 2, 3)]
        (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = compare([tmp_path / "s0", tmp_path / "s1"], tmp_path / "curves.png")
    final = out["final"]["dmc:walker_walk · scratch · small"]
    assert final == {"env_steps": 3000, "mean": 31.0, "std": 1.0, "runs": 2}
    # The random policy's return is drawn where the runs play episodes as it was measured (action repeat 2).
    random_ref = wmlab.eval.scores.REFERENCE["dmc:walker_walk"]
    assert out["random"] == {"dmc:walker_walk": {"mean": random_ref["random"], "std": random_ref["random_std"],
                                                 "episodes": random_ref["episodes"]}}
    assert (tmp_path / "curves.png").stat().st_size > 1000
    with open(tmp_path / "curves.csv") as f:
        assert len(list(csv.DictReader(f))) == 3
    with pytest.raises(ValueError, match="no 'eval/success'"):
        compare([tmp_path / "s0"], tmp_path / "x.png", key="eval/success")
    repeat4 = tmp_path / "repeat4"
    repeat4.mkdir()
    (repeat4 / "config.yaml").write_text("env: dmc:walker_walk\nmethod: none\naction_repeat: 4\n")
    (repeat4 / "run.json").write_text('{"job": "dreamer", "preset": "small"}')
    (repeat4 / "metrics.jsonl").write_text(json.dumps(rows[0]) + "\n")
    assert "random" not in compare([repeat4], tmp_path / "r4.png")
    # `wmlab compare runs/*` also meets pretraining runs: they are skipped with a warning.
    pre = tmp_path / "pre_apv"
    pre.mkdir()
    (pre / "run.json").write_text('{"job": "pretrain", "preset": "dreamerv2"}')
    with pytest.warns(UserWarning, match="not dreamer runs: .*pre_apv"):
        again = compare([tmp_path / "s0", tmp_path / "s1", pre], tmp_path / "curves.png")
    assert again["final"] == out["final"]
    with pytest.raises(ValueError, match="no dreamer run folder"), pytest.warns(UserWarning):
        compare([pre], tmp_path / "x.png")


def test_compare_draws_a_published_reference_curve(tmp_path):
    import gzip

    from wmlab.eval.curves import compare

    run = tmp_path / "s0"
    run.mkdir()
    (run / "config.yaml").write_text("env: dmc:walker_walk\nmethod: none\n")
    (run / "run.json").write_text('{"job": "dreamer", "preset": "small"}')
    rows = [{"step": i, "env_step": 1000 * i, "eval/return_mean": 10.0 * i} for i in (1, 2, 3)]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    # Two seeds, each round of evaluation episodes logged 2 steps apart (as DreamerV3's score files do);
    # the 3k round (3002-3006) is the first past the runs' last step and the last drawn; another task is ignored.
    def record(seed, base):
        xs = [r * 1000 + 2 * e for r in (1, 2, 3, 9, 12) for e in (1, 2, 3)]
        ys = [base + 100 * r + e for r in (1, 2, 3, 9, 12) for e in (1, 2, 3)]
        return {"task": "dmc_walker_walk", "method": "dreamerv3", "seed": seed, "xs": xs, "ys": ys}
    other = {"task": "dmc_cheetah_run", "method": "dreamerv3", "seed": 0, "xs": [1000], "ys": [5.0]}
    # A third seed evaluated once, off the others' schedule: a round one seed of three reached is left out.
    stray = {"task": "dmc_walker_walk", "method": "dreamerv3", "seed": 2, "xs": [2500], "ys": [-1e6]}
    ref = tmp_path / "scores.json.gz"
    with gzip.open(ref, "wt") as f:
        json.dump([record(0, 0.0), record(1, 20.0), stray, other], f)
    out = compare([run], tmp_path / "c.png", reference=ref)
    label = "dmc:walker_walk · dreamerv3 (reference)"
    # Round 3 (3002–3006): seed means 302 and 322 → 312 ± 10, the round nearest the runs' last step (3000).
    assert out["reference"] == {label: {"env_steps": 3004, "mean": 312.0, "std": 10.0, "runs": 2}}
    assert out["final"]["dmc:walker_walk · scratch · small"]["mean"] == 30.0
    with open(tmp_path / "c.csv") as f:
        drawn = [(int(r["env_step"]), float(r["mean"])) for r in csv.DictReader(f) if r["group"] == label]
    assert drawn == [(1004, 112.0), (2004, 212.0), (3004, 312.0)]
    # An explicit gap smaller than the episodes' spacing splits every round into its episodes.
    fine = compare([run], tmp_path / "c.png", reference=ref, reference_gap=1)["reference"][label]
    assert fine["env_steps"] == 3002 and fine["mean"] == 311.0

    with pytest.raises(FileNotFoundError, match="missing.json.gz is missing"):
        compare([run], tmp_path / "c.png", reference=tmp_path / "missing.json.gz")
    bad = tmp_path / "bad.json"
    bad.write_text('{"task": "dmc_walker_walk"}')
    with pytest.raises(ValueError, match="bad.json is not a list of"):
        compare([run], tmp_path / "c.png", reference=bad)
    bad.write_text("[{")
    with pytest.raises(ValueError, match="bad.json is not readable JSON"):
        compare([run], tmp_path / "c.png", reference=bad)
    only_other = tmp_path / "other.json"
    only_other.write_text(json.dumps([other]))
    with pytest.raises(ValueError, match="no task named like dmc:walker_walk; it has dmc_cheetah_run"):
        compare([run], tmp_path / "c.png", reference=only_other)


def test_run_by_run_statistics_against_hand_counted_cases():
    from wmlab.eval.stats import permutation_p_value, probability_of_improvement

    assert probability_of_improvement([0.3, 0.2], [0.1, 0.0]) == 1.0
    assert permutation_p_value([0.3, 0.2], [0.1, 0.0]) == 1 / 6  # only the observed split of 6 is as far apart
    assert probability_of_improvement([0.2, 0.0], [0.1, 0.0]) == 0.625  # wins 1 + 1 + 0 + ½ (the tie) of 4
    assert permutation_p_value([0.2, 0.0], [0.1, 0.0]) == pytest.approx(0.5)  # 3 of 6 splits gap ≥ 0.05
    assert (probability_of_improvement([0.5] * 2, [0.5] * 2), permutation_p_value([0.5] * 2, [0.5] * 2)) == (0.5, 1.0)
    assert (probability_of_improvement([0.0] * 3, [1.0] * 3), permutation_p_value([0.0] * 3, [1.0] * 3)) == (0.0, 1.0)
    assert permutation_p_value([1.0] * 3, [0.0] * 3) == 1 / 20  # the exact smallest p of 3 runs against 3
    sampled = permutation_p_value([1.0] * 3, [0.0] * 3, limit=10)  # 20 splits > 10: sampled, never p = 0
    assert 0 < sampled < 0.5
    with pytest.raises(ValueError, match="at least one score"):
        probability_of_improvement([], [1.0])


def test_stratified_statistics_relabel_within_each_stratum():
    from wmlab.eval.stats import (
        permutation_p_value,
        stratified_permutation_p_value,
        stratified_probability_of_improvement,
    )

    # One stratum is the two-sample test, sampled or exact.
    assert stratified_permutation_p_value([([0.3, 0.2], [0.1, 0.0])]) == permutation_p_value([0.3, 0.2], [0.1, 0.0])
    assert (stratified_permutation_p_value([([1.0] * 3, [0.0] * 3)], limit=10)
            == permutation_p_value([1.0] * 3, [0.0] * 3, limit=10))
    # Task A: gaps over its 6 splits are ±0.2 (once each) and ±0.0 (4 ways: ±0.1 mixed); task B: ±1 over 2 splits.
    # Observed (0.2 + 1) / 2 = 0.6; of the 12 joint relabellings only the observed one reaches it.
    strata = [([0.3, 0.2], [0.1, 0.0]), ([1.0], [0.0])]
    assert stratified_permutation_p_value(strata) == pytest.approx(1 / 12)
    # Each task weighs alike: a large gap in a high-scale task cannot be undone by relabelling across tasks (the
    # pooled two-sample test, blind to tasks, would mix task B's 500s with task A's 0s and see no gap at all).
    mixed = [([0.1, 0.2], [0.0, 0.0]), ([500.0, 510.0], [400.0, 410.0])]
    assert stratified_permutation_p_value(mixed) == pytest.approx(1 / 36)
    assert permutation_p_value([0.1, 0.2, 500.0, 510.0], [0.0, 0.0, 400.0, 410.0]) > 0.2
    # Pairs are counted within strata only: A gives 4 wins of 4, B 0 of 1; across tasks it would be different.
    assert stratified_probability_of_improvement([([0.3, 0.2], [0.1, 0.0]), ([0.0], [1.0])]) == 4 / 5
    sampled = stratified_permutation_p_value([([1.0] * 3, [0.0] * 3), ([1.0] * 3, [0.0] * 3)], limit=100)
    assert 0 < sampled < 0.05  # 400 joint splits > 100: sampled; exact would be 1/400
    with pytest.raises(ValueError, match="at least one stratum"):
        stratified_permutation_p_value([])
    with pytest.raises(ValueError, match="at least one score"):
        stratified_probability_of_improvement([([1.0], [0.0]), ([], [1.0])])


def test_compare_against_a_baseline(tmp_path, capsys):
    from wmlab.cli import main
    from wmlab.eval.curves import compare

    def run(name, method, curve, env="metaworld:reach"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.yaml").write_text(f"env: {env}\nmethod: {method}\n")
        (folder / "run.json").write_text('{"job": "dreamer", "preset": "small"}')
        rows = [{"step": i, "env_step": 1000 * (i + 1), "eval/success": v} for i, v in enumerate(curve)]
        (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        return folder

    scratch = [run("v2_s0", "none", [0.0, 0.2, 0.1]), run("v2_s1", "none", [0.0, 0.0, 0.0])]
    # The third evaluation of apv_s1 is missing: the runs are compared over the first two, which all made.
    apv = [run("apv_s0", "apv", [0.2, 0.6, 0.9]), run("apv_s1", "apv", [0.0, 0.2])]
    out = compare([*scratch, *apv], tmp_path / "c.png", key="eval/success", baseline="scratch")
    vs = out["versus"]["metaworld:reach · apv · small"]
    assert vs["baseline"] == "metaworld:reach · scratch · small" and vs["env_steps"] == [1000, 2000]
    assert vs["average"] == pytest.approx(0.25) and vs["baseline_average"] == pytest.approx(0.05)  # (.4+.1)/2, .1/2
    # .4 beats both, .1 ties .1 and beats 0: 3.5 of 4; the pooled .4 .1 .1 0 split as far apart 2 ways of 6.
    assert vs["p_improvement"] == 0.875 and vs["p_value"] == pytest.approx(1 / 3)
    assert list(out["versus"]) == ["metaworld:reach · apv · small"]  # the baseline is not compared with itself
    assert "across_envs" not in out  # one env
    # A second task: each setting's mean over the envs it ran, runs compared and relabelled within their env.
    drawer = [run("do_v2_s0", "none", [0.0, 0.0], "metaworld:drawer-open"),
              run("do_v2_s1", "none", [0.0, 0.1], "metaworld:drawer-open"),
              run("do_apv_s0", "apv", [0.1, 0.1], "metaworld:drawer-open")]
    both = compare([*scratch, *apv, *drawer], tmp_path / "c.png", key="eval/success", baseline="scratch")
    across = both["across_envs"]["apv · small"]
    assert sorted(across["envs"]) == ["metaworld:drawer-open", "metaworld:reach"]
    assert across["average"] == pytest.approx((0.25 + 0.1) / 2)
    assert across["baseline_average"] == pytest.approx((0.05 + 0.025) / 2)
    assert across["p_improvement"] == pytest.approx((3.5 + 2) / (4 + 2))  # pairs within each env only
    # Reach's gap 0.2 is reached by 2 of its 6 splits, drawer-open's 0.075 by 1 of 3; their mean by 2 of 18 pairs.
    assert across["p_value"] == pytest.approx(2 / 18)
    with pytest.raises(ValueError, match="baseline='dreamerv3' names 0 settings of metaworld:reach"):
        compare([*scratch, *apv], tmp_path / "c.png", key="eval/success", baseline="dreamerv3")
    with pytest.raises(ValueError, match="baseline='small' names 2 settings"):
        compare([*scratch, *apv], tmp_path / "c.png", key="eval/success", baseline="small")
    assert "versus" not in compare([*scratch, *apv], tmp_path / "c.png", key="eval/success")
    assert main(["compare", *map(str, scratch + apv), "key=eval/success", "baseline=scratch",
                 f"out={tmp_path / 'd.png'}"]) == 0
    assert '"p_improvement": 0.875' in capsys.readouterr().out


def test_compare_keeps_runs_with_other_settings_apart(tmp_path):
    from wmlab.eval.curves import compare

    def run(name, grad, seed, value):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.yaml").write_text(
            f"env: dmc:cartpole_balance\nmethod: none\nrun_dir: {folder}\nenv_steps: {1000 + seed}\n"
            f"agent:\n  behavior:\n    actor:\n      grad: {grad}\n"
            f"trainer:\n  seed: {seed}\n  log_every: {10 + seed}\n")
        (folder / "run.json").write_text('{"job": "dreamer", "preset": "small"}')
        (folder / "metrics.jsonl").write_text(json.dumps({"step": 1, "env_step": 1000, "eval/return_mean": value}))
        return folder

    runs = [run("a0", "reinforce", 0, 1.0), run("a1", "reinforce", 1, 3.0), run("b0", "dynamics", 0, 10.0)]
    # A fine-tuned run: what its method sets (stack, bonus, init=) is named by the method, not the label.
    apv = run("apv0", "reinforce", 0, 5.0)
    text = (apv / "config.yaml").read_text().replace("method: none", f"method: apv\ninit: {tmp_path / 'pre'}")
    (apv / "config.yaml").write_text(text + "  intrinsic: video\n  world_model:\n    stack: true\n")
    final = compare([*runs, apv], tmp_path / "c.png")["final"]
    assert final.pop("dmc:cartpole_balance · apv · small") == {"env_steps": 1000, "mean": 5.0, "std": 0.0, "runs": 1}
    assert final == {
        "dmc:cartpole_balance · scratch · small · actor.grad=reinforce":
            {"env_steps": 1000, "mean": 2.0, "std": 1.0, "runs": 2},
        "dmc:cartpole_balance · scratch · small · actor.grad=dynamics":
            {"env_steps": 1000, "mean": 10.0, "std": 0.0, "runs": 1},
    }


@REWARDS.register("near_half")
def _near_half(agent, feat, actions):
    r = -(actions[..., 0].float() - 0.5) ** 2  # the step into s_t rewards the action chosen before it
    return torch.cat([torch.zeros_like(r[:, :1]), r], 1)


@pytest.mark.parametrize("grad", ["reinforce", "dynamics"])
def test_actor_learns_to_maximise_a_registered_reward(one_thread, grad):
    spec = {**SPEC, "action_dim": 1}
    agent = agent_for(spec, **{"reward": "near_half", "train_world_model": False, "behavior.actor.grad": grad,
                               "behavior.actor.lr": 1e-3, "behavior.critic.lr": 1e-3})
    opt = torch.optim.AdamW(agent.optimizer_groups(), lr=1e-3)

    def policy_error():
        with torch.no_grad():
            return (agent.task.policy(agent.wm.features(agent.imagined_starts(256))).mean - 0.5).abs().mean().item()

    before = policy_error()
    returns = []
    for _ in range(120):
        loss, metrics = agent.loss({"starts": 64})
        returns.append(float(metrics["task/return"]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        agent.after_update()
    assert policy_error() < 0.5 * before and policy_error() < 0.1
    assert np.mean(returns[-10:]) > np.mean(returns[:10]) + 0.3


def test_compiled_update_traces_once_and_trains(tmp_path, one_thread, monkeypatch):
    """trainer.compile=true compiles the whole Dreamer update, and no later update recompiles: the taped
    observe-loop linears (whose tape grows one entry per step) run outside the graphs, and no cache fills in
    between that dynamo would guard on."""
    from torch._dynamo.testing import CompileCounter

    from wmlab.train import Trainer, TrainerConfig

    torch._dynamo.reset()
    counter = CompileCounter()  # dynamo's tracing without inductor's C compile
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda module, **kw: real_compile(module, backend=counter))

    def batches():
        seed = 0
        while True:
            yield batch_for(SPEC, seed=seed)
            seed += 1

    agent = agent_for(SPEC)
    before = [p.detach().clone() for p in agent.wm.parameters()]
    config = TrainerConfig(steps=1, lr=1e-3, precision="fp32", compile=True, ckpt_every=0, progress=False,
                           tensorboard=False)
    trainer = Trainer(agent, batches(), config, tmp_path, optimizer_groups=agent.optimizer_groups())
    first = trainer.fit()
    graphs = counter.frame_count
    trainer.config.steps = 4
    last = trainer.fit()
    torch._dynamo.reset()
    assert graphs > 0, "the update was not compiled"
    assert counter.frame_count == graphs, f"recompiled: {graphs} graphs after update 1, {counter.frame_count} after 4"
    assert last["step"] == 4 and np.isfinite([first["train/loss"], last["train/loss"]]).all()
    assert all(not torch.equal(b, p) for b, p in zip(before, agent.wm.parameters()))


def test_cli_dreamer_with_plan2explore_on_metaworld_logs_success_and_tensorboard_videos(tmp_path, capsys,
                                                                                         one_thread):
    """`wmlab train dreamer` online with agent.explore=plan2explore on a task with a success signal, then
    `wmlab eval`: the explorer collects the agent's episodes, success rates reach the logs, TensorBoard
    gets the eval and open-loop video strips."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from wmlab.cli import main

    run = tmp_path / "runs" / "p2e"
    code = main(["train", "dreamer", "preset=debug", "env=metaworld:reach", f"run_dir={run}", "env_steps=120",
                 "prefill=40", "time_limit=20", "eval.every=60", "eval.episodes=1", "agent.explore=plan2explore",
                 "trainer.tensorboard=true"])
    out, err = capsys.readouterr()
    assert code == 0, err
    store = EpisodeStore(run / "replay")
    policies = [store.meta(e)["policy"] for e in store.ids()]
    assert policies[0] == "random" and "explore" in policies and "task" not in policies
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("episode/success" in r for r in rows) and [r["env_step"] for r in rows if "eval/success" in r]
    assert any("train/explore/actor_loss" in r for r in rows) and any("train/task/actor_loss" in r for r in rows)
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    assert {"eval/policy", "eval/open_loop"} <= set(acc.Tags()["images"])
    assert "eval/success" in acc.Tags()["scalars"]

    code = main(["eval", str(run), "episodes=2", "videos=1"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["episodes"] == 2 and 0.0 <= result["success"] <= 1.0 and len(result["videos"]) == 1
    with open(tmp_path / "runs" / "results.csv") as f:
        row = list(csv.DictReader(f))[-1]
    assert row["run"] == str(run) and row["success"] != ""


@pytest.mark.parametrize("spec,actor", [(SPEC, {}), (DISCRETE, {}),
                                        (SPEC, {"grad": "auto", "dist": "trunc_normal"})],
                         ids=["continuous", "discrete", "dreamerv2-actor"])
def test_bf16_dreamer_update_trains_every_part_with_finite_fp32_losses(tmp_path, one_thread, spec, actor):
    from wmlab.train import Trainer, TrainerConfig

    def batches():
        seed = 0
        while True:
            yield batch_for(spec, seed=seed)
            seed += 1

    agent = agent_for(spec, **{"explore": "plan2explore", "world_model.loss.free_avg": bool(actor),
                               **{f"behavior.actor.{k}": v for k, v in actor.items()}})
    parts = {"world model": agent.wm, "task actor": agent.task.actor, "task critic": agent.task.critic,
             "explore actor": agent.explorer.actor, "ensemble": agent.ensemble}
    before = {name: [p.detach().clone() for p in m.parameters()] for name, m in parts.items()}
    config = TrainerConfig(steps=3, lr=1e-3, precision="bf16", ckpt_every=0, progress=False, tensorboard=False)
    with Trainer(agent, batches(), config, tmp_path, optimizer_groups=agent.optimizer_groups()) as trainer:
        out = trainer.fit()
    assert out["step"] == 3 and out["skipped_steps"] == 0 and np.isfinite(out["train/loss"])
    for name, m in parts.items():
        moved = [not torch.equal(b, p) for b, p in zip(before[name], m.parameters())]
        assert any(moved), f"{name} did not train under bf16"
        assert all(p.dtype == torch.float32 for p in m.parameters()), f"{name} master weights are not fp32"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, metrics = agent.loss(batch_for(spec, seed=99))
    assert loss.dtype == torch.float32 and all(torch.isfinite(v) for v in metrics.values())


def test_online_training_interleaves_with_every_policy_step(tmp_path, one_thread, monkeypatch):
    from wmlab.train import Trainer

    calls, real = [], Trainer.fit
    monkeypatch.setattr(Trainer, "fit", lambda self, until=None: calls.append((self.step, until)) or
                        real(self, until))
    out = api.train("dreamer", preset="debug", run_dir=str(tmp_path / "r"), env_steps=150, prefill=50,
                    **{"eval.every": 0, "eval.videos": 0})
    # debug: 1 update per agent step (train ratio 32, batch 4×8): trained between steps, one at a time.
    trained = [(a, b) for a, b in calls if b is not None and b > a]
    assert len(trained) >= 0.8 * out["step"] and all(b - a <= 2 for a, b in trained[1:])
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    logged = [r["step"] for r in rows if "train/loss" in r]
    assert logged and all(s % 5 == 0 for s in logged[:-1])  # log_every=5 still averages across calls

"""Collection into the episode store: schema, seeds, workers, and a SIGKILL mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from wmlab.data.store import EpisodeStore
from wmlab.data.verify import verify
from wmlab.envs.collect import collect, rollout
from wmlab.envs.policies import make_policy
from wmlab.envs.registry import make


def test_rollout_follows_the_schema():
    env = make("dmc:cartpole_swingup", size=(16, 16))
    episode = rollout(env, make_policy("sticky", env.action_space, 0), seed=0, max_steps=20)
    assert episode["image"].shape == (21, 16, 16, 3) and episode["image"].dtype == np.uint8
    assert episode["action"].shape == (21, 1) and (episode["action"][-1] == 0).all()
    assert episode["reward"][0] == 0 and episode["is_first"].tolist() == [True] + [False] * 20
    assert episode["is_last"][-1] and not episode["is_terminal"].any()  # cut by max_steps: not terminal
    # Row t's action drives o_t → o_{t+1}: replaying the actions reproduces the frames.
    obs, _ = env.reset(seed=0)
    for t in range(5):
        assert (obs["image"] == episode["image"][t]).all()
        obs, *_ = env.step(episode["action"][t])


def test_sticky_policy_repeats_actions():
    env = make("procgen:coinrun")
    sticky = make_policy("sticky", env.action_space, 0, prob=0.9)
    actions = [int(sticky({})) for _ in range(400)]
    repeats = np.mean([a == b for a, b in zip(actions, actions[1:])])
    assert 0.85 < repeats < 0.97
    with pytest.raises(ValueError, match="unknown policy 'greedy'"):
        make_policy("greedy", env.action_space, 0)


def test_collect_with_workers_is_deterministic_by_seed(tmp_path):
    summary = collect("procgen:coinrun", tmp_path / "a", episodes=4, workers=2, max_steps=30, seed=10,
                      split="train", progress=False)
    assert summary["episodes"] == 4
    store = EpisodeStore(tmp_path / "a")
    assert store.spec["action_discrete"] and store.spec["num_actions"] == 15
    metas = sorted((store.meta(e) for e in store.ids()), key=lambda m: m["seed"])
    assert [m["seed"] for m in metas] == [10, 11, 12, 13] and {m["split"] for m in metas} == {"train"}
    collect("procgen:coinrun", tmp_path / "b", episodes=1, workers=1, max_steps=30, seed=12, progress=False)
    again = EpisodeStore(tmp_path / "b")
    first = next(e for e in store.ids() if store.meta(e)["seed"] == 12)
    a, b = store.load(first), again.load(again.ids()[0])
    assert all((a[k] == b[k]).all() for k in a)  # the same seed, the same episode
    assert verify(tmp_path / "a") == []


def test_bad_settings_fail_before_any_worker(tmp_path):
    with pytest.raises(ValueError, match="dmc:walker_walk"):
        collect("dmc:walker_wlak", tmp_path / "x", episodes=1)
    with pytest.raises(ValueError, match="unknown policy"):
        collect("dmc:walker_walk", tmp_path / "x", episodes=1, policy="nope")
    assert not (tmp_path / "x").exists()


def test_render_setting_reaches_the_env_and_the_episode_record(tmp_path):
    from wmlab import api
    from wmlab.config import ConfigError

    api.collect(env="dmc:cartpole_balance", out=str(tmp_path / "full"), episodes=1, max_steps=3, render="full",
                progress=False)
    store = EpisodeStore(tmp_path / "full")
    (eid,) = store.ids()
    assert store.meta(eid)["env_kwargs"] == {"render": "full"}
    with pytest.raises(ConfigError, match="must be one of fast, full"):
        api.collect(env="dmc:cartpole_balance", out=str(tmp_path / "x"), render="nice")
    with pytest.raises(ValueError, match="takes no setting 'render'"):
        api.collect(env="procgen:coinrun", out=str(tmp_path / "x"), render="full", progress=False)
    assert not (tmp_path / "x").exists()


def test_metaworld_expert_solves_the_task_where_random_does_not(tmp_path):
    from wmlab import api

    out = api.collect(env="metaworld:reach", out=str(tmp_path / "demo"), episodes=2, policy="expert",
                      expert_noise="0.1", max_steps=120, size="16,16", workers=1, progress=False)
    assert out["episodes"] == 2
    store = EpisodeStore(tmp_path / "demo")
    assert all(store.meta(e)["success"] for e in store.ids())  # demonstrations, not noise
    collect("metaworld:reach", tmp_path / "random", episodes=2, policy="random", max_steps=120, size=(16, 16),
            progress=False)
    rnd = EpisodeStore(tmp_path / "random")
    assert not any(rnd.meta(e)["success"] for e in rnd.ids())
    with pytest.raises(ValueError, match="scripted experts for metaworld:\\* envs only, not 'dmc:walker_walk'"):
        collect("dmc:walker_walk", tmp_path / "x", episodes=1, policy="expert")
    with pytest.raises(ValueError, match="expert_noise=0.1 applies to policy=expert only"):
        api.collect(env="metaworld:reach", out=str(tmp_path / "x"), policy="sticky", expert_noise="0.1")
    assert not (tmp_path / "x").exists()


def test_sigkill_mid_collection_keeps_every_committed_episode(tmp_path):
    out = tmp_path / "store"
    settings = dict(episodes=8, max_steps=60, size=(16, 16), progress=False)
    from test_store import KILL_MID_WRITE

    # The collector kills itself inside the store's writer, with the third episode half written.
    code = (f"KILL_AFTER = 2\n{KILL_MID_WRITE}\nfrom wmlab.envs.collect import collect\n"
            f"collect('dmc:cartpole_swingup', {str(out)!r}, **{settings!r})")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MUJOCO_GL": "egl"}, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    store = EpisodeStore(out)
    assert len(store) == 2
    problems = verify(out)
    assert [p.kind for p in problems] == ["leftover"]  # only the write in flight is lost
    # Every committed episode is whole and equals a fresh rollout with its seed.
    env = make("dmc:cartpole_swingup", size=(16, 16))
    for eid in store.ids():
        meta = store.meta(eid)
        fresh = rollout(env, make_policy("random", env.action_space, meta["seed"]), meta["seed"], 60)
        stored = store.load(eid)
        assert stored.keys() == fresh.keys() and all((stored[k] == fresh[k]).all() for k in fresh)
    # The same command again collects only the missing seeds.
    summary = collect("dmc:cartpole_swingup", out, **settings)
    assert summary["skipped"] == len(store) and summary["episodes"] == 8 - len(store)
    store.refresh()
    assert sorted(store.meta(e)["seed"] for e in store.ids()) == list(range(8))
    assert verify(out, fix=True) == [] or all(p.kind == "leftover" for p in verify(out))


@pytest.mark.parametrize("workers", [1, 2])
def test_collection_shows_a_progress_bar(tmp_path, capsys, workers):
    collect("procgen:coinrun", tmp_path / "s", episodes=3, workers=workers, max_steps=10, seed=0, progress=True)
    err = capsys.readouterr().err
    assert "collect procgen:coinrun" in err and "3/3" in err, err[-500:]

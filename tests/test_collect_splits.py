"""Train/test splits by seed in one collect command, and Procgen levels that depend on their seed alone."""

from __future__ import annotations

import numpy as np
import pytest

import wmlab.api as api
from wmlab.config import ConfigError
from wmlab.data.store import EpisodeStore
from wmlab.envs.collect import collect, split_for_seed
from wmlab.envs.procgen import ProcgenEnv

ENV = "procgen:coinrun"
SHORT = dict(max_steps=20, progress=False)


def _seed_splits(store: EpisodeStore) -> dict[int, str]:
    return {int(store.meta(e)["seed"]): store.split_of(e) for e in store.ids()}


def test_split_for_seed_is_a_fixed_hash_that_honours_the_fraction():
    # Pinned values: a change of the hash would move stored levels between splits.
    assert [split_for_seed(s, 0.5) for s in range(8)] == \
        ["train", "train", "train", "test", "test", "test", "train", "test"]
    seeds = range(10_000)
    for fraction in (0.05, 0.1, 0.3):
        share = np.mean([split_for_seed(s, fraction) == "test" for s in seeds])
        assert abs(share - fraction) < 0.015, (fraction, share)
    # A larger fraction only moves seeds from train to test.
    small = {s for s in seeds if split_for_seed(s, 0.1) == "test"}
    large = {s for s in seeds if split_for_seed(s, 0.2) == "test"}
    assert small < large
    assert all(split_for_seed(s, 0.0) == "train" for s in range(100))


def test_one_command_makes_disjoint_splits_and_a_rerun_collects_nothing(tmp_path):
    out = tmp_path / "coinrun"
    summary = collect(ENV, out, episodes=8, workers=2, policy="sticky", test_fraction=0.5, **SHORT)
    expected = {s: split_for_seed(s, 0.5) for s in range(8)}
    assert {"train", "test"} == set(expected.values())
    assert summary["episodes"] == 8
    assert summary["splits"] == {k: list(expected.values()).count(k) for k in ("train", "test")}
    store = EpisodeStore(out)
    assert _seed_splits(store) == expected
    train, test = ({int(store.meta(e)["seed"]) for e in store.ids(split=k)} for k in ("train", "test"))
    assert train and test and not train & test
    assert store.spec["num_actions"] == 15
    actions = np.concatenate([store.load(e)["action"][:-1] for e in store.ids()])
    assert actions.dtype == np.int64 and 0 <= actions.min() and actions.max() < 15
    assert np.mean(actions[1:] == actions[:-1]) > 0.4  # sticky: actions repeat

    again = collect(ENV, out, episodes=8, workers=2, policy="sticky", test_fraction=0.5, **SHORT)
    assert again["episodes"] == 0 and again["skipped"] == 8 and again["splits"] == {}
    assert again["store_splits"] == summary["splits"]

    # An overlapping command keeps every level's split and adds only the new seeds.
    more = collect(ENV, out, episodes=6, seed=5, workers=1, policy="sticky", test_fraction=0.5, **SHORT)
    assert more["episodes"] == 3 and more["skipped"] == 3
    store.refresh()
    assert _seed_splits(store) == {s: split_for_seed(s, 0.5) for s in range(11)}


def test_test_fraction_settings_fail_in_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"split='train' and test_fraction=0.1 both given") as err:
        collect(ENV, tmp_path / "x", episodes=1, split="train", test_fraction=0.1, **SHORT)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\).*got 1.5"):
        collect(ENV, tmp_path / "x", episodes=1, test_fraction=1.5, **SHORT)
    with pytest.raises(ConfigError, match="sticky_prob=0.9 applies to policy=sticky only"):
        api.collect(env=ENV, out=str(tmp_path / "x"), episodes=1, sticky_prob="0.9")
    assert not (tmp_path / "x").exists()


def test_a_level_never_lands_in_both_splits_of_a_store(tmp_path):
    out = tmp_path / "mixed"
    collect(ENV, out, episodes=4, split="train", **SHORT)  # seed 3 hashes to "test" at 0.5
    with pytest.raises(ValueError, match="already holds procgen:coinrun seed 3 in split 'train'"):
        collect(ENV, out, episodes=4, test_fraction=0.5, **SHORT)
    assert len(EpisodeStore(out)) == 4


def test_cli_settings_reach_the_collector(tmp_path):
    summary = api.collect(env=ENV, out=str(tmp_path / "cli"), episodes="3", seed="2", max_steps="10",
                          test_fraction="0.5", policy="sticky", sticky_prob="0.9", progress="false")
    store = EpisodeStore(tmp_path / "cli")
    assert _seed_splits(store) == {s: split_for_seed(s, 0.5) for s in (2, 3, 4)}
    assert summary["store_splits"] == {"train": 1, "test": 2}
    assert {store.meta(e)["policy_kwargs"]["prob"] for e in store.ids()} == {0.9}


def _play(env: ProcgenEnv, level: int, actions: np.ndarray) -> np.ndarray:
    obs, info = env.reset(seed=level)
    assert info["level"] == level
    frames = [obs["image"].copy()]
    for a in actions:
        obs, *_ = env.step(int(a))
        frames.append(obs["image"].copy())
    return np.stack(frames)


def test_a_level_plays_the_same_whatever_the_env_played_before():
    actions = np.random.default_rng(0).integers(0, 15, 30)
    env = ProcgenEnv("coinrun")
    first = _play(env, 7, actions)
    for other in (3, 11, 7, 2**31 - 1):
        _play(env, other, actions[::-1])
    after = _play(env, 7, actions)
    other = _play(env, 8, actions)
    env.close()
    fresh_env = ProcgenEnv("coinrun")
    fresh = _play(fresh_env, 7, actions)
    fresh_env.close()
    assert first.tobytes() == after.tobytes() == fresh.tobytes()
    assert first.tobytes() != other.tobytes()

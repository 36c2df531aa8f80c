"""Typed configs: presets as differences, dotted overrides, unknown keys, round trip."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from wmlab import config as C


@dataclass
class Model:
    deter: int = 512
    size: tuple[int, int] = (64, 64)
    act: str = "silu"


@dataclass
class Run:
    model: Model = field(default_factory=Model)
    lr: float = 1e-4
    name: str | None = None
    amp: bool = True
    precision: "str" = "bf16"


PRESETS = {"debug": {"model": {"deter": 16}}, "fast": {"lr": 1e-3}}


def test_preset_then_overrides():
    cfg = C.resolve(Run(), PRESETS, "debug", C.parse_overrides(["model.size=32,48", "lr=3e-4", "amp=false"]))
    assert cfg.model.deter == 16 and cfg.model.size == (32, 48) and cfg.lr == 3e-4 and cfg.amp is False
    # Presets compose in order, overrides win.
    cfg = C.resolve(Run(), PRESETS, "debug,fast", {"model.deter": "8"})
    assert cfg.model.deter == 8 and cfg.lr == 1e-3


def test_unknown_key_names_it_and_suggests():
    with pytest.raises(C.ConfigError, match=r"model\.detr.*model\.deter"):
        C.apply(Run(), {"model.detr": 3})
    with pytest.raises(C.ConfigError, match="unknown preset 'nope'"):
        C.resolve(Run(), PRESETS, "nope", {})


@pytest.mark.parametrize("key,value,msg", [("lr", "abc", "needs a number"), ("amp", "maybe", "true or false"),
                                           ("model.deter", "1.5", "needs an integer"),
                                           ("model.size", "1,2,3", "needs 2 values")])
def test_bad_values_are_named(key, value, msg):
    with pytest.raises(C.ConfigError, match=msg) as err:
        C.apply(Run(), {key: value})
    assert key in str(err.value)


def test_none_and_group_errors():
    assert C.apply(Run(name="x"), {"name": "none"}).name is None
    with pytest.raises(C.ConfigError, match="is a group"):
        C.apply(Run(), {"model": "3"})
    with pytest.raises(C.ConfigError, match="not key=value"):
        C.parse_overrides(["steps"])


def test_save_load_round_trip(tmp_path):
    cfg = C.resolve(Run(), PRESETS, "debug", {"model.size": "16,16", "name": "run"})
    C.save(cfg, tmp_path / "config.yaml")
    assert C.load(Run, tmp_path / "config.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("model:\n  nope: 1\n")
    with pytest.raises(C.ConfigError, match=r"bad\.yaml.*model\.nope"):
        C.load(Run, tmp_path / "bad.yaml")


def test_every_preset_holds_only_its_differences():
    """Each key of each job's presets, applied alone to the job's defaults, changes the value it names."""
    import functools

    from wmlab import jobs

    def get(cfg, key):
        return functools.reduce(getattr, key.split("."), cfg)

    restated = []
    for name in jobs.names():
        job = jobs.get(name)
        defaults = job.config_cls()
        for preset, tree in job.presets.items():
            for key, value in C.flatten(tree).items():
                if get(C.apply(defaults, {key: value}), key) == get(defaults, key):
                    restated.append(f"{name}/{preset}: {key}={value!r}")
    assert not restated, "presets restate defaults: " + "; ".join(restated)


@dataclass
class Choices:
    kind: Literal["a", "b"] = "a"
    maybe: Literal["x", "y"] | None = None
    model: Model = field(default_factory=Model)


def test_check_choices_for_configs_built_in_python():
    C.check_choices(Choices(kind="b", maybe="y"))
    C.check_choices(Choices(maybe=None))
    with pytest.raises(C.ConfigError, match="^config key 'p.kind' must be one of a, b, got 'c'$"):
        C.check_choices(Choices(kind="c"), "p.")  # type: ignore[arg-type]
    with pytest.raises(C.ConfigError, match="'maybe' must be one of x, y, got 'z'"):
        C.check_choices(Choices(maybe="z"))  # type: ignore[arg-type]
    C.check_choices(Run(model=Model(act="anything")))  # plain str fields are not choices

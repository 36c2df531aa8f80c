"""Starting a Dreamer agent from another run (``wmlab train dreamer init=<run>``): which world-model tensors
load, which stay new or unused, the data spec and the video-pretraining method the source run had."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_world_model(agent: Any, path: str) -> dict[str, Any]:
    """Initialise ``agent.wm`` from a world-model or agent checkpoint; returns which tensors loaded and which
    the agent creates new (shape-mismatched tensors stay new)."""
    from wmlab.train import checkpoint as ckpt

    step_dir = ckpt.resolve(path)
    tensors = ckpt._read_tensors(step_dir / "model.safetensors")
    prefix = "wm." if any(k.startswith("wm.") for k in tensors) else ""
    # A head whose target the source run's data lacked was never trained (the reward head of a model
    # pretrained on action-free video): it stays new rather than passing as learned.
    run = run_of(step_dir)
    source_keys = read_spec(run / "spec.json").get("keys") if (run / "spec.json").exists() else None
    untrained = ("reward_head.",) if source_keys is not None and "reward" not in source_keys else ()
    # APV: a stacked model takes a pretrained action-free model's RSSM as its af_rssm.
    stack_from_plain = agent.wm.af_rssm is not None and not any(k.startswith(prefix + "af_rssm.") for k in tensors)
    own = agent.wm.state_dict()
    loaded, mismatched = [], []
    for name, value in own.items():
        if name == "updates" or name.startswith(untrained):
            continue  # the update counter belongs to this run (APV's stack_freeze counts from its start)
        if stack_from_plain and name.startswith("rssm."):
            continue  # the action-conditioned RSSM is new
        source = "rssm." + name[len("af_rssm."):] if stack_from_plain and name.startswith("af_rssm.") else name
        src = tensors.get(prefix + source)
        if src is None:
            continue
        if tuple(src.shape) != tuple(value.shape):
            mismatched.append(name)
            continue
        value.copy_(src)
        loaded.append(name)
    if not loaded:
        raise ValueError(f"checkpoint {step_dir} holds no world-model tensor that fits this agent (is it a "
                         f"world_model or dreamer run with the same preset?)")
    new = sorted(set(own) - set(loaded) - {"updates"})
    # Parts outside the world model that the agent creates new (actor, critic, the policy's reward head...).
    others = sorted(name for name, _ in agent.named_children() if name != "wm")
    # Source world-model tensors this agent has no place for (a context encoder fine-tuned without it...).
    taken = {"rssm." + n[len("af_rssm."):] if stack_from_plain and n.startswith("af_rssm.") else n
             for n in loaded + mismatched}
    unused = sorted(k[len(prefix):] for k in tensors if k.startswith(prefix)
                    and k[len(prefix):] not in taken | {"updates"} and not k[len(prefix):].startswith(untrained))
    return {"path": str(step_dir), "loaded": len(loaded), "new": new, "mismatched": mismatched,
            "unused": unused, "agent_new": others}


def run_of(step_dir: Path) -> Path:
    """The run folder a resolved checkpoint folder belongs to (``<run>/checkpoints/<step>``)."""
    return step_dir.parent.parent if step_dir.parent.name == "checkpoints" else step_dir


def read_spec(path: Path) -> dict[str, Any]:
    spec = json.loads(path.read_text())
    spec["image"] = tuple(spec["image"])
    return spec


def method_of(path: str) -> str | None:
    """The video-pretraining method of the run that holds checkpoint ``path`` (None when it names none)."""
    import yaml

    from wmlab.train import checkpoint as ckpt

    try:
        config = run_of(ckpt.resolve(path)) / "config.yaml"
    except FileNotFoundError:
        return None  # load_world_model names the missing checkpoint
    if not config.is_file():
        return None
    return (yaml.safe_load(config.read_text()) or {}).get("method")


def spec_of_init(init: str) -> dict[str, Any]:
    """The data spec a start=imagined agent inherits from the run named by ``init``."""
    from wmlab import config as C
    from wmlab.data.store import EpisodeStore
    from wmlab.train import checkpoint as ckpt

    run = run_of(ckpt.resolve(init))
    if (run / "spec.json").exists():
        return read_spec(run / "spec.json")
    if (run / "config.yaml").exists():
        from wmlab.jobs.world_model import WorldModelJobConfig

        data = C.load(WorldModelJobConfig, run / "config.yaml").data
        store = EpisodeStore(data, mode="r")
        if store.spec is not None:
            return store.spec
    raise FileNotFoundError(f"cannot tell the observation/action spec of {init}: it has no spec.json and no "
                            f"world_model config.yaml whose data store still exists")

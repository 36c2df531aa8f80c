"""Video-pretraining methods as config data: what each sets when pretraining on action-free video
(``wmlab train pretrain method=<m>``) and when fine-tuning with real actions and Dreamer
(``wmlab train dreamer method=<m> init=<pretrained run>``). Both halves use the one RSSM world model and
its plug points; nothing here is code.

- ``plain``: an action-free world model, then the same model with an action input (new weights) — the
  "plain WM" baseline of the ContextWM paper.
- ``apv`` (Seo et al. 2022): pretrain the action-free RSSM; fine-tune a new action-conditioned RSSM stacked
  on it (``stack``; ``stack_freeze`` keeps the pretrained part fixed for N updates), with the video-based
  intrinsic bonus and a second reward head for the policy.
- ``contextwm`` (Wu et al. 2023): the contextualised decoder (``codec=contextwm``) in both phases, on APV's
  recipe: the pretrained action-free RSSM with a new action-conditioned RSSM stacked on it, the video-based
  bonus and the dual reward heads.
- ``prelar`` (Zhang et al. 2024): latent actions inferred from frames drive the RSSM in pretraining; at
  fine-tuning an action encoder maps real actions into that space, aligned with the reused latent action
  model (``action_input=prelar`` in both phases; the plug switches on whether the data has actions), with
  APV's video bonus and dual reward heads as PreLAR's fine-tuning config has them.
"""

from __future__ import annotations

from typing import Any

METHODS: dict[str, dict[str, dict[str, Any]]] = {
    "plain": {
        "pretrain": {"model": {"action_input": "none"}},
        "finetune": {},
    },
    "apv": {
        "pretrain": {"model": {"action_input": "none"}},
        "finetune": {"agent": {"world_model": {"stack": True}, "intrinsic": "video"}},
    },
    "contextwm": {
        "pretrain": {"model": {"action_input": "none", "codec": "contextwm"}},
        "finetune": {"agent": {"world_model": {"codec": "contextwm", "stack": True}, "intrinsic": "video"}},
    },
    "prelar": {
        "pretrain": {"model": {"action_input": "prelar"}},
        "finetune": {"agent": {"world_model": {"action_input": "prelar"}, "intrinsic": "video"}},
    },
}


def phase(name: str) -> dict[str, dict[str, Any]]:
    """``{method: settings}`` of one phase (``pretrain`` or ``finetune``)."""
    return {m: dict(p[name]) for m, p in METHODS.items()}

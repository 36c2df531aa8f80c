"""PreLAR latent actions (action_input=prelar): pretraining on action-free video, InfoNCE with a real
gradient, fine-tuning with an action encoder aligned to the reused latent action model."""

import copy

import pytest
import torch

import wmlab.models.prelar  # noqa: F401  (registers action_input=prelar)
from wmlab.models import BatchError, WorldModel, make_config

SIZE = 16
LA = {"latent_action.dim": 4, "latent_action.depth": 4, "latent_action.units": 32}

pytestmark = pytest.mark.usefixtures("one_thread")


def spec(action_dim=None, discrete=False, num_actions=None):
    return {"image": (SIZE, SIZE, 3), "action_dim": action_dim, "action_discrete": discrete,
            "num_actions": num_actions, "proprio_dim": None}


def model(s, seed=0, **overrides):
    torch.manual_seed(seed)
    return WorldModel(make_config("debug", action_input="prelar", **LA, **overrides), s)


def squares(batch, length, seed, with_action=True):
    """A coloured 4×4 square moved by action[t] between frame t and t+1."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(batch, 2, generator=g) * (SIZE - 4)
    action = torch.rand(batch, length, 2, generator=g) * 2 - 1
    colour = torch.randint(80, 256, (batch, 1, 1, 3), generator=g)
    ys, xs = torch.arange(SIZE).view(1, SIZE, 1), torch.arange(SIZE).view(1, 1, SIZE)
    frames = []
    for t in range(length):
        y, x = pos[:, 0].round().view(-1, 1, 1), pos[:, 1].round().view(-1, 1, 1)
        mask = ((ys >= y) & (ys < y + 4) & (xs >= x) & (xs < x + 4)).unsqueeze(-1)
        frames.append((mask * colour).to(torch.uint8))
        pos = (pos + 3.0 * action[:, t]).clamp(0, SIZE - 4)
    is_first = torch.zeros(batch, length, dtype=torch.bool)
    is_first[:, 0] = True
    out = {"image": torch.stack(frames, 1), "is_first": is_first,
           "reward": torch.zeros(batch, length), "is_terminal": torch.zeros(batch, length, dtype=torch.bool)}
    if with_action:
        out["action"] = action
    return out


def descend(params, loss_of, steps, lr):
    """Adam on ``params`` for ``steps`` steps of the scalar ``loss_of()``; the losses it saw."""
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_of()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def lam_grads(m):
    return {n: p.grad for n, p in m.named_parameters() if n.startswith("actions.lam.")}


def test_pretraining_loss_and_nce_gradient():
    m = model(spec())
    assert not m.actions.finetune and m.actions.action_encoder is None
    batch = squares(3, 5, seed=0, with_action=False)
    loss, metrics = m.loss(batch)
    assert torch.isfinite(loss) and "latent_action_nce" in metrics and "latent_action_align" not in metrics
    loss.backward()  # the whole loss trains the LAM too (z is the RSSM's action)
    m.zero_grad()
    scale, nce = m.actions.aux_losses(batch)["latent_action_nce"]
    assert scale == m.cfg.latent_action.contrastive and nce.dim() == 0 and nce.item() > 0
    nce.backward()
    grads = lam_grads(m)
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads.values()), \
        [n for n, g in grads.items() if g is None or g.abs().sum() == 0]


def test_latent_actions_follow_motion_and_last_row_is_zero():
    m = model(spec())
    a = squares(2, 4, seed=1, with_action=False)
    b = {k: v.clone() for k, v in a.items()}
    b["image"][:, 1] = torch.roll(a["image"][:, 0], shifts=(3, -2), dims=(1, 2))  # same o_0, other o_1
    with torch.no_grad():
        za, zb = m.actions(a), m.actions(b)
    assert za.shape == (2, 4, 4)
    assert not torch.allclose(za[:, 0], zb[:, 0], atol=1e-4)
    assert torch.equal(za[:, -1], torch.zeros(2, 4)) and torch.equal(zb[:, -1], torch.zeros(2, 4))


def test_adam_lowers_nce():
    m = model(spec())
    batch = squares(4, 5, seed=2, with_action=False)
    losses = descend(m.actions.lam.parameters(), lambda: m.actions.aux_losses(batch)["latent_action_nce"][1],
                     steps=8, lr=3e-3)
    assert losses[-1] < losses[0], losses


def test_forward_result_is_reused_by_aux_losses():
    m = model(spec())
    batch = squares(2, 4, seed=3, with_action=False)
    calls = []
    hook = m.actions.lam.frames.register_forward_hook(lambda *_: calls.append(1))
    m.loss(batch)
    hook.remove()
    assert len(calls) == 1
    m.actions(batch)  # a cached graph must not block copying the model (e.g. for a target/EMA copy)
    copy.deepcopy(m)


def test_finetuning_loads_lam_and_aligns_to_detached_target():
    pre = model(spec(), seed=0)
    fine = model(spec(action_dim=2), seed=1)
    assert fine.actions.finetune
    result = fine.load_state_dict(pre.state_dict(), strict=False)
    assert not result.unexpected_keys
    missing_plug = [k for k in result.missing_keys if k.startswith("actions.")]
    assert missing_plug and all(k.startswith("actions.action_encoder.") for k in missing_plug)
    assert result.missing_keys == missing_plug
    fine_sd, pre_sd = fine.state_dict(), pre.state_dict()
    lam_keys = [k for k in pre_sd if k.startswith("actions.lam.")]
    assert lam_keys and all(torch.equal(fine_sd[k], pre_sd[k]) for k in lam_keys)

    batch = squares(3, 5, seed=4)
    loss, metrics = fine.loss(batch)
    assert torch.isfinite(loss) and {"latent_action_align", "latent_action_nce"} <= set(metrics)
    loss.backward()
    fine.zero_grad()
    align = fine.actions.aux_losses(batch)["latent_action_align"][1]
    align.backward()
    enc = [p.grad for n, p in fine.named_parameters() if n.startswith("actions.action_encoder.")]
    assert all(g is not None for g in enc) and sum(g.abs().sum() for g in enc) > 0
    assert all(g is None or g.abs().sum() == 0 for g in lam_grads(fine).values())


def test_discrete_actions_int_and_onehot():
    m = model(spec(action_dim=1, discrete=True, num_actions=3))
    batch = squares(2, 4, seed=5)
    batch["action"] = torch.randint(0, 3, (2, 4))
    loss, metrics = m.loss(batch)
    assert torch.isfinite(loss) and "latent_action_align" in metrics
    onehot = torch.nn.functional.one_hot(batch["action"], 3).float()
    torch.testing.assert_close(m.actions.encode(batch["action"]), m.actions.encode(onehot))
    assert m.actions.encode(onehot).shape == (2, 4, 4)
    assert m.actions.encode(onehot[:, 0]).shape == (2, 4)  # an agent's [B, num_actions]
    with pytest.raises(BatchError):
        m.actions.encode(torch.zeros(2, 5))


def test_encode_in_pretraining_mode_raises():
    m = model(spec())
    with pytest.raises(BatchError, match="pretraining mode"):
        m.actions.encode(torch.zeros(2, 2))


def test_bf16_autocast():
    for s in (spec(), spec(action_dim=2)):
        m = model(s)
        batch = squares(2, 4, seed=6, with_action=s["action_dim"] is not None)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, metrics = m.loss(batch)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        assert torch.isfinite(metrics["latent_action_nce"])
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


DISCRETE_LA = {"latent_action.codes": 6}


def test_discrete_latent_actions_are_codes_and_train_through_the_quantiser():
    m = model(spec(), **DISCRETE_LA)
    vq = m.actions.lam.vq
    batch = squares(3, 5, seed=7, with_action=False)
    batch["is_first"][1, 3] = True  # a second episode starts inside row 1: transition 2 → 3 is no transition
    embed_before = vq.embed.clone()
    loss, metrics = m.loss(batch)
    assert torch.isfinite(loss) and metrics["latent_action_commit"] > 0
    assert not torch.equal(vq.embed, embed_before)  # a training forward moves the EMA codebook
    embed_before = vq.embed.clone()
    with torch.no_grad():  # ... and one without gradient does not; every real transition gets one of its codes
        z = m.actions.infer(batch)[0]
    valid = torch.ones(3, 4, dtype=torch.bool)
    valid[1, 2] = False
    dist = torch.cdist(z[:, :-1][valid], vq.embed)  # [N, codes]
    assert bool((dist.min(-1).values < 1e-5).all()) and torch.equal(vq.embed, embed_before)
    assert torch.equal(z[1, 2], torch.zeros(4)) and torch.equal(z[:, -1], torch.zeros(3, 4))
    # Straight-through: the world-model loss (the RSSM reads the codes) and the contrastive and commitment
    # terms each reach the LAM's frame encoder and inference MLP.
    for name in ("latent_action_nce", "latent_action_commit"):
        m.zero_grad()
        m.actions.aux_losses(batch)[name][1].backward()
        for part in ("frames", "infer"):
            g = [p.grad for n, p in m.named_parameters() if n.startswith(f"actions.lam.{part}.")]
            assert g and all(x is not None for x in g) and sum(x.abs().sum() for x in g) > 0, (name, part)
    m.zero_grad()
    kl_and_recon = m.loss(batch)[0] - sum(m.actions.aux_losses(batch)[n][1] for n in
                                           ("latent_action_nce", "latent_action_commit"))
    kl_and_recon.backward()
    assert sum(p.grad.abs().sum() for n, p in m.named_parameters()
               if n.startswith("actions.lam.infer.") and p.grad is not None) > 0


def test_discrete_latent_actions_pretrain_then_finetune_onto_the_same_codes():
    pre = model(spec(), **DISCRETE_LA)
    pre.loss(squares(3, 5, seed=8, with_action=False))  # moves the codebook away from its initial state
    fine = model(spec(action_dim=2), seed=1, **DISCRETE_LA)
    fine.load_state_dict(pre.state_dict(), strict=False)
    assert torch.equal(fine.actions.lam.vq.embed, pre.actions.lam.vq.embed)
    batch = squares(3, 5, seed=9)
    encoded = fine.actions(batch)
    torch.testing.assert_close(encoded.norm(dim=-1), torch.ones(3, 5))  # on the codes' unit sphere
    align = descend(fine.actions.action_encoder.parameters(),
                    lambda: fine.actions.aux_losses(batch)["latent_action_align"][1], steps=30, lr=1e-2)
    assert align[-1] < 0.5 * align[0], align


@pytest.mark.parametrize("codes", [-1, 1])
def test_bad_code_count_is_a_clear_error(codes):
    with pytest.raises(ValueError, match="latent_action.codes"):
        model(spec(), **{"latent_action.codes": codes})


def test_the_world_model_loss_trains_continuous_latent_actions(one_thread):
    m = model(spec(), **{"latent_action.contrastive": 0.0})  # no InfoNCE: only the KL and reconstruction
    m.loss(squares(3, 5, seed=10, with_action=False))[0].backward()
    g = [p.grad for n, p in m.named_parameters() if n.startswith("actions.lam.infer.")]
    assert g and all(x is not None for x in g) and sum(x.abs().sum() for x in g) > 0


def test_gaussian_latent_actions_with_a_kl_bottleneck(one_thread):
    m = model(spec(), **{"latent_action.kl": 0.5})
    batch = squares(3, 5, seed=11, with_action=False)
    loss, metrics = m.loss(batch)
    assert torch.isfinite(loss) and metrics["latent_action_kl"] > 0
    m.zero_grad()
    scale, kl = m.actions.aux_losses(batch)["latent_action_kl"]
    assert scale == 0.5
    kl.backward()  # the bottleneck pulls the inference network toward the prior
    assert sum(p.grad.abs().sum() for n, p in m.named_parameters()
               if n.startswith("actions.lam.infer.") and p.grad is not None) > 0
    with torch.no_grad():  # sampled while training, the mean in eval mode
        a, b = m.actions(batch), m.actions({**batch, "image": batch["image"].clone()})
        assert not torch.allclose(a[:, :-1], b[:, :-1])
        m.eval()
        c, d = m.actions(batch), m.actions({**batch, "image": batch["image"].clone()})
        torch.testing.assert_close(c, d)
    # Fine-tuning: encoded real actions are unbounded like the Gaussian latents and align to them.
    fine = model(spec(action_dim=2), seed=1, **{"latent_action.kl": 0.5})
    fine.load_state_dict(m.state_dict(), strict=False)
    assert "latent_action_align" in fine.loss(squares(3, 5, seed=12))[1]


FROZEN = {"latent_action.freeze": True}


@pytest.mark.parametrize("kind", [{}, DISCRETE_LA, {"latent_action.kl": 0.5}], ids=["tanh", "codes", "gaussian"])
def test_frozen_latent_action_model_at_finetuning(kind):
    pre = model(spec(), **kind)
    pre.loss(squares(3, 5, seed=13, with_action=False))  # a pretrained LAM (and a codebook that has moved)
    fine = model(spec(action_dim=2), seed=1, **kind, **FROZEN)
    fine.load_state_dict(pre.state_dict(), strict=False)
    fine.train()
    assert fine.training and not fine.actions.lam.training  # train() leaves the fixed LAM in eval mode
    lam_before = {n: p.detach().clone() for n, p in fine.named_parameters() if n.startswith("actions.lam.")}
    buffers_before = {n: b.clone() for n, b in fine.named_buffers() if n.startswith("actions.lam.")}
    batch = squares(3, 5, seed=14)
    loss, metrics = fine.loss(batch)
    assert torch.isfinite(loss) and "latent_action_align" in metrics
    assert not {"latent_action_nce", "latent_action_commit", "latent_action_kl"} & set(metrics)
    loss.backward()  # the whole fine-tuning loss: nothing reaches the LAM, the action encoder learns
    assert all(g is None for g in lam_grads(fine).values())
    z, embed, _ = fine.actions.infer(batch)
    assert not z.requires_grad and not embed.requires_grad  # no graph is built through the fixed LAM
    enc = [p.grad for n, p in fine.named_parameters() if n.startswith("actions.action_encoder.")]
    assert enc and all(g is not None for g in enc) and sum(g.abs().sum() for g in enc) > 0
    fine.zero_grad()
    # The target is deterministic (the Gaussian's mean), so the alignment can be driven down.
    align = descend([p for p in fine.parameters() if p.requires_grad],
                    lambda: fine.actions.aux_losses(batch)["latent_action_align"][1], steps=30, lr=1e-2)
    assert align[-1] < 0.5 * align[0], align
    assert all(torch.equal(p, lam_before[n]) for n, p in fine.named_parameters() if n in lam_before)
    assert all(torch.equal(b, buffers_before[n]) for n, b in fine.named_buffers() if n in buffers_before)
    assert all(torch.equal(fine.state_dict()[k], pre.state_dict()[k]) for k in lam_before)


def test_freezing_the_latent_action_model_in_pretraining_is_a_clear_error():
    with pytest.raises(ValueError, match="latent_action.freeze=true .* no actions"):
        model(spec(), **FROZEN)

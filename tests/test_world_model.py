"""WorldModel tests: learning, plug points, action alignment, open loop, bf16, errors, presets."""

import pytest
import torch

from wmlab.models import (
    ACTION_INPUTS,
    BatchError,
    PRESETS,
    UnknownNameError,
    WorldModel,
    make_config,
)
from wmlab.models.actions import RealActions
from wmlab.nn import symlog

SIZE = 16


pytestmark = pytest.mark.usefixtures("one_thread")


def spec(size=(SIZE, SIZE), action_dim=2, discrete=False, num_actions=None, proprio_dim=None):
    return {"image": (*size, 3), "action_dim": action_dim, "action_discrete": discrete,
            "num_actions": num_actions, "proprio_dim": proprio_dim}


def moving_squares(batch: int, length: int, seed: int, size=(SIZE, SIZE)) -> dict[str, torch.Tensor]:
    """A coloured 4×4 square that action[t] moves between frame t and t+1; reward is its x position."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    pos = torch.rand(batch, 2, generator=g) * torch.tensor([h - 4.0, w - 4.0])
    action = torch.rand(batch, length, 2, generator=g) * 2 - 1
    colour = torch.randint(80, 256, (batch, 1, 1, 3), generator=g)
    ys, xs = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    frames, rewards = [], []
    for t in range(length):
        y, x = pos[:, 0].round().view(-1, 1, 1), pos[:, 1].round().view(-1, 1, 1)
        mask = ((ys >= y) & (ys < y + 4) & (xs >= x) & (xs < x + 4)).unsqueeze(-1)
        frames.append((mask * colour).to(torch.uint8))
        rewards.append(pos[:, 1] / w)
        pos = (pos + 2.0 * action[:, t]).clamp(torch.zeros(2), torch.tensor([h - 4.0, w - 4.0]))
    is_first = torch.zeros(batch, length, dtype=torch.bool)
    is_first[:, 0] = True
    return {"image": torch.stack(frames, 1), "action": action, "reward": torch.stack(rewards, 1),
            "is_first": is_first, "is_terminal": torch.zeros(batch, length, dtype=torch.bool)}


def debug_model(seed=0, size=(SIZE, SIZE), **overrides) -> WorldModel:
    torch.manual_seed(seed)
    s = overrides.pop("spec", None) or spec(size)
    return WorldModel(make_config("debug", **overrides), s)


def test_loss_falls_on_moving_squares():
    model = debug_model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(50):
        loss, metrics = model.loss(moving_squares(8, 12, seed=step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(metrics["total"].item())
    assert set(metrics) >= {"total", "image", "reward", "cont", "kl_dyn", "kl_rep", "prior_ent", "post_ent"}
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.6 * first, (first, last)


def test_every_parameter_gets_gradient():
    model = debug_model()
    loss, _ = model.loss(moving_squares(2, 6, seed=0))
    loss.backward()
    # The reward head's output layer starts at zero, so its hidden layers get gradient only after a step;
    # every other parameter must get gradient immediately.
    missing = [n for n, p in model.named_parameters()
               if (p.grad is None or p.grad.abs().sum() == 0) and not n.startswith("reward_head.hidden")]
    assert not missing, missing


def test_action_alignment():
    model = debug_model()
    batch = moving_squares(2, 8, seed=1)
    t = 3
    _, prior = model.observe(batch, sample=False)
    changed = dict(batch, action=batch["action"].clone())
    changed["action"][:, t] += 0.7
    _, prior2 = model.observe(changed, sample=False)
    torch.testing.assert_close(prior2.logits[:, : t + 1], prior.logits[:, : t + 1])
    torch.testing.assert_close(prior2.deter[:, : t + 1], prior.deter[:, : t + 1])
    for later in range(t + 1, 8):
        assert not torch.allclose(prior2.deter[:, later], prior.deter[:, later])


def test_open_loop_uses_actions_from_last_context_frame():
    model = debug_model()
    batch = moving_squares(2, 8, seed=2)
    out = model.open_loop(batch, context=3, sample=False)
    assert out["pred"].shape == out["truth"].shape == (2, 5, SIZE, SIZE, 3)
    assert out["pred"].dtype == out["truth"].dtype == torch.uint8
    assert torch.equal(out["truth"], batch["image"][:, 3:])
    # The last row's action drives nothing inside the window; the one after the last context frame does.
    for row, should_change in ((7, False), (2, True)):
        changed = dict(batch, action=batch["action"].clone())
        changed["action"][:, row] = -changed["action"][:, row] * 5
        feats_a = model.open_loop(batch, 3, sample=False)["pred"]
        feats_b = model.open_loop(changed, 3, sample=False)["pred"]
        assert torch.equal(feats_a, feats_b) != should_change


def test_none_action_plug_runs_without_action_key():
    model = debug_model(action_input="none", spec=spec(action_dim=None))
    batch = moving_squares(2, 6, seed=3)
    del batch["action"], batch["reward"]
    loss, metrics = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and "reward" not in metrics
    assert model.open_loop(batch, context=2)["pred"].shape == (2, 4, SIZE, SIZE, 3)


def test_embedding_plug_reads_key_and_sends_gradient():
    model = debug_model(action_input="embedding", embedding_key="latent_action", embedding_dim=5)
    batch = moving_squares(2, 6, seed=4)
    del batch["action"]
    with pytest.raises(BatchError, match="latent_action"):
        model.loss(batch)
    emb = torch.randn(2, 6, 5, requires_grad=True)
    batch["latent_action"] = emb
    loss, _ = model.loss(batch)
    loss.backward()
    # Row t drives o_t → o_{t+1}; the last row drives a step outside the window, so it gets no gradient.
    assert emb.grad[:, :-1].abs().sum(-1).gt(0).all()
    assert torch.equal(emb.grad[:, -1], torch.zeros(2, 5))


def test_discrete_actions_become_onehot():
    model = debug_model(spec=spec(action_dim=1, discrete=True, num_actions=5))
    assert model.actions.dim == 5
    batch = moving_squares(2, 6, seed=5)
    batch["action"] = torch.randint(0, 5, (2, 6))
    loss, _ = model.loss(batch)
    assert torch.isfinite(loss)


def test_proprio_is_encoded_and_decoded():
    model = debug_model(proprio=True, spec=spec(proprio_dim=4))
    batch = moving_squares(2, 6, seed=6)
    with pytest.raises(BatchError, match="proprio"):
        model.loss(batch)
    batch["proprio"] = torch.randn(2, 6, 4)
    loss, metrics = model.loss(batch)
    assert "proprio" in metrics and torch.isfinite(loss)


@pytest.mark.parametrize("symlog_space", [True, False])
def test_proprio_is_read_and_predicted_in_symlog_space_or_raw(symlog_space):
    model = debug_model(proprio=True, proprio_symlog=symlog_space, spec=spec(proprio_dim=4))
    batch = moving_squares(2, 6, seed=6)
    batch["proprio"] = torch.randn(2, 6, 4) * 50.0
    want = symlog(batch["proprio"]) if symlog_space else batch["proprio"]
    seen, predicted = [], []
    model.proprio_enc.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    model.proprio_dec.register_forward_hook(lambda m, args, out: predicted.append(out))
    with torch.no_grad():
        _, metrics = model.loss(batch)
    torch.testing.assert_close(seen[0], want)  # what the encoder reads
    target_loss = (predicted[0].float() - want).pow(2).sum(-1).mean()  # what the decoder is scored against
    torch.testing.assert_close(metrics["proprio"], target_loss)


def test_bf16_autocast_forward_backward():
    model = debug_model()
    batch = moving_squares(4, 8, seed=7)
    torch.manual_seed(0)
    ref, _ = model.loss(batch)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, metrics = model.loss(batch)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert abs(loss.item() - ref.item()) < 0.1 * abs(ref.item())
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_non_square_images():
    model = debug_model(size=(32, 48), spec=spec((32, 48)))
    batch = moving_squares(2, 5, seed=8, size=(32, 48))
    loss, _ = model.loss(batch)
    loss.backward()
    assert model.open_loop(batch, context=2)["pred"].shape == (2, 3, 32, 48, 3)


def test_custom_action_plug_registers_without_core_edits():
    @ACTION_INPUTS.register("test_doubled")
    class Doubled(RealActions):
        def encode(self, action):
            return 2.0 * super().encode(action)

    model = debug_model(action_input="test_doubled")
    assert isinstance(model.actions, Doubled)
    loss, _ = model.loss(moving_squares(2, 4, seed=9))
    assert torch.isfinite(loss)


def test_bad_inputs_raise_clear_errors():
    model = debug_model()
    batch = moving_squares(1, 4, seed=10)
    with pytest.raises(BatchError, match="image"):
        model.loss(dict(batch, image=batch["image"][:, :, :8]))
    with pytest.raises(BatchError, match="'action'"):
        model.loss({k: v for k, v in batch.items() if k != "action"})
    with pytest.raises(UnknownNameError, match="none, prelar, real"):
        debug_model(action_input="bogus")
    with pytest.raises(ValueError, match="action_input=none"):
        debug_model(spec=spec(action_dim=None))
    with pytest.raises(ValueError, match="image_size"):
        debug_model(image_size=(64, 64))
    with pytest.raises(ValueError, match="between 1 and"):
        model.open_loop(batch, context=4)
    cfg = make_config("debug")
    cfg.reward_loss = "l1"  # built in Python, bypassing the override parser's checks
    with pytest.raises(ValueError, match="^config key 'reward_loss' must be one of twohot, mse, got 'l1'$"):
        WorldModel(cfg, spec())


def test_presets_build_and_paper_parameter_count():
    for name in PRESETS:
        assert make_config(name).rssm.deter > 0
    cfg = make_config("paper")
    assert (cfg.rssm.deter, cfg.rssm.stoch, cfg.rssm.classes, cfg.cnn.depth) == (512, 32, 32, 32)
    model = WorldModel(cfg, spec((64, 64), action_dim=6))
    count = sum(p.numel() for p in model.parameters())
    assert 15.6e6 < count < 15.8e6, count  # ≈15.7M, as in the reference PyTorch DreamerV3
    assert model.codec.embed_dim == 4096 and model.feat_dim == 512 + 1024


def test_kl_dyn_trains_only_the_prior_and_kl_rep_only_the_posterior():
    # One step from a zero initial state (so no other prior feeds the posterior), no free bits, no other loss:
    # the prior's output layer learns from the kl_dyn term only and the posterior's from the kl_rep term only.
    batch = moving_squares(4, 1, seed=3)
    quiet = {"loss.image": 0.0, "loss.reward": 0.0, "loss.cont": 0.0, "loss.free_nats": 0.0,
             "rssm.initial": "zeros"}

    def grads(kl_dyn, kl_rep):
        model = debug_model(**quiet, **{"loss.kl_dyn": kl_dyn, "loss.kl_rep": kl_rep})
        model.loss(batch)[0].backward()
        size = lambda layer: float(sum(p.grad.abs().sum() for p in layer.parameters() if p.grad is not None))  # noqa: E731
        return size(model.rssm.prior_out), size(model.rssm.post_out)

    prior, post = grads(1.0, 0.0)
    assert prior > 0 and post == 0
    prior, post = grads(0.0, 1.0)
    assert prior == 0 and post > 0
    (p1, _), (p2, _) = grads(0.5, 0.1), grads(1.0, 0.1)
    assert p2 == pytest.approx(2 * p1, rel=1e-4)  # the prior's gradient scales with kl_dyn

"""Math of the Dreamer actor-critic: λ-returns, the percentile return normaliser, action distributions."""

import math

import numpy as np
import pytest
import torch

from wmlab.agents.returns import ActionDist, ReturnNorm, lambda_return
from wmlab.nn.dists import sample_onehot


def test_lambda_return_hand_computed():
    # States s0..s2 (H=2). R_2 = v2; R_1 = r2 + d2·v2 (any λ: one step left);
    # R_0 = r1 + d1·((1-λ)·v1 + λ·R_1).
    reward = torch.tensor([[9.0, 1.0, 2.0]])  # reward of s0 is ignored
    value = torch.tensor([[0.0, 10.0, 20.0]])
    disc = torch.tensor([[0.9, 0.9, 0.5]])
    lam = 0.8
    r1 = 2.0 + 0.5 * 20.0  # 12
    r0 = 1.0 + 0.9 * ((1 - lam) * 10.0 + lam * r1)  # 1 + 0.9·(2 + 9.6) = 11.44
    out = lambda_return(reward, value, disc, lam)
    assert out.shape == (1, 2)
    torch.testing.assert_close(out, torch.tensor([[r0, r1]]))


def test_lambda_return_limits():
    g = torch.Generator().manual_seed(0)
    reward, value = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    disc = torch.full((4, 6), 0.9)
    # λ=0: one-step TD targets.
    td = reward[:, 1:] + disc[:, 1:] * value[:, 1:]
    torch.testing.assert_close(lambda_return(reward, value, disc, 0.0), td)
    # λ=1: discounted Monte-Carlo sum bootstrapped with the last value.
    mc = value[:, -1].clone()
    expect = []
    for t in reversed(range(5)):
        mc = reward[:, t + 1] + disc[:, t + 1] * mc
        expect.append(mc)
    torch.testing.assert_close(lambda_return(reward, value, disc, 1.0), torch.stack(expect[::-1], 1))
    with pytest.raises(ValueError, match="same shape|one shape"):
        lambda_return(reward, value[:, :3], disc, 0.5)


def test_return_norm_tracks_the_percentile_range_and_never_amplifies():
    norm = ReturnNorm(5, 95, decay=0.5)
    ret = torch.linspace(0, 100, 1001)
    norm.update(ret)
    assert norm.lo.item() == pytest.approx(5.0, abs=1e-3) and norm.hi.item() == pytest.approx(95.0, abs=1e-3)
    assert norm.scale().item() == pytest.approx(90.0, abs=1e-3)
    norm.update(ret * 0)  # EMA halfway toward a zero range
    assert norm.scale().item() == pytest.approx(45.0, abs=1e-3)
    small = ReturnNorm(5, 95, decay=0.0)
    small.update(torch.linspace(0, 0.1, 101))
    assert small.scale().item() == 1.0  # max(1, range): small returns are not blown up
    off = ReturnNorm(enabled=False)
    off.update(ret)
    assert off.scale().item() == 1.0 and int(off.count) == 0


def test_continuous_action_dist_matches_torch_normal():
    out = torch.randn(5, 6)
    dist = ActionDist(out, discrete=False, min_std=0.1, max_std=1.0)
    mean, std = torch.tanh(out[:, :3]), 0.9 * torch.sigmoid(out[:, 3:] + 2) + 0.1
    ref = torch.distributions.Independent(torch.distributions.Normal(mean, std), 1)
    action = dist.sample()
    torch.testing.assert_close(dist.log_prob(action), ref.log_prob(action))
    torch.testing.assert_close(dist.entropy(), ref.entropy())
    assert bool((dist.std >= 0.1).all() and (dist.std <= 1.0).all())


def test_truncated_normal_action_dist_matches_scipy_and_is_reparameterised():
    from scipy import stats

    torch.manual_seed(0)
    out = torch.cat([torch.tensor([[0.0, 2.5, -3.0]]), torch.tensor([[0.0, -1.0, -4.0]])], 1)  # means, stds
    out.requires_grad_(True)
    dist = ActionDist(out, discrete=False, min_std=0.1, max_std=1.0, dist="trunc_normal")
    mean, std = dist.mean.detach().double().numpy()[0], dist.std.detach().double().numpy()[0]
    ref = stats.truncnorm((-1 - mean) / std, (1 - mean) / std, loc=mean, scale=std)
    x = torch.tensor([[0.3, 0.95, -0.999]])
    np.testing.assert_allclose(dist.log_prob(x).item(), ref.logpdf(x.double().numpy()[0]).sum(), rtol=1e-4)
    np.testing.assert_allclose(dist.entropy().item(), ref.entropy().sum(), rtol=1e-4)
    # Samples stay in [-1, 1] and follow the truncated law; they are differentiable in mean and std.
    many = ActionDist(out.expand(20000, 6), discrete=False, dist="trunc_normal").sample()
    assert bool((many.abs() <= 1.0).all())
    np.testing.assert_allclose(many.mean(0).detach().numpy(), ref.mean(), atol=0.02)
    np.testing.assert_allclose(many.std(0).detach().numpy(), ref.std(), atol=0.02)
    many.sum().backward()
    assert bool((out.grad != 0).all())


def test_discrete_action_dist_unimix_and_straight_through():
    logits = torch.tensor([[10.0, -10.0, -10.0, -10.0]], requires_grad=True)
    dist = ActionDist(logits, discrete=True, unimix=0.04)
    probs = dist.logp.exp()
    assert probs.min().item() == pytest.approx(0.01, rel=1e-3)  # unimix floor 4%/4 classes
    sample = dist.sample()
    assert sample.sum().item() == pytest.approx(1.0) and set(sample.detach().flatten().tolist()) <= {0.0, 1.0}
    (sample * torch.arange(4.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    onehot = torch.eye(4)[[0]]
    assert dist.log_prob(onehot).item() == pytest.approx(math.log(probs[0, 0].item()), rel=1e-5)
    assert dist.entropy().item() > 0


def test_inverse_cdf_sampler_follows_the_probabilities():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logp = probs.log().expand(200_000, 4)
    torch.manual_seed(0)
    freq = sample_onehot(logp).mean(0)
    torch.testing.assert_close(freq, probs, atol=5e-3, rtol=0)
    # Given uniforms pick by the cumulative distribution.
    u = torch.tensor([0.05, 0.15, 0.35, 0.65, 0.999])
    picks = sample_onehot(probs.log().expand(5, 4), u).argmax(-1)
    assert picks.tolist() == [0, 1, 2, 3, 3]


def test_distribution_maths_stays_fp32_under_bf16_autocast():
    """KL, two-hot, unimix, Bernoulli and squared-error terms take bf16 activations (what a bf16 layer gives)
    and compute in fp32: the same values, bit for bit, as on fp32 copies of those activations."""
    from wmlab.nn.dists import TwoHot, bernoulli_nll, categorical_entropy, kl_balance, mse_sum, unimix_logprobs

    g = torch.Generator().manual_seed(0)
    post, prior = (torch.randn(4, 8, 6, generator=g).bfloat16() for _ in range(2))
    reward_logits = torch.randn(4, 255, generator=g).bfloat16()
    reward = torch.randn(4, generator=g) * 10
    cont_logits = torch.randn(4, generator=g).bfloat16()
    pixels = torch.rand(4, 3, 3, generator=g).bfloat16()
    frames = torch.randint(0, 256, (4, 3, 3), generator=g, dtype=torch.uint8)
    two = TwoHot()

    def terms(post, prior, reward_logits, cont_logits, pixels):
        lp, lq = unimix_logprobs(post, 0.01), unimix_logprobs(prior, 0.01)
        dyn, rep, kl = kl_balance(lp, lq, free_nats=0.5)
        return {"unimix": lp, "dyn": dyn, "rep": rep, "kl": kl, "entropy": categorical_entropy(lp),
                "twohot_loss": two.loss(reward_logits, reward), "twohot_decode": two.decode(reward_logits),
                "bernoulli": bernoulli_nll(cont_logits, torch.ones(4)),
                "mse": mse_sum(pixels, frames, 2, 1 / 255)}

    inputs = (post, prior, reward_logits, cont_logits, pixels)
    want = terms(*(x.float() for x in inputs))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = terms(*inputs)
    for name, value in got.items():
        assert value.dtype == torch.float32, name
        assert torch.equal(value, want[name]), name

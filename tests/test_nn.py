"""Math and shape tests of wmlab.nn: symlog, two-hot, unimix, straight-through, KL balance, CNN codec."""

import math

import pytest
import torch

from wmlab.nn import (
    MLP,
    ConvDecoder,
    ConvEncoder,
    TwoHot,
    categorical_entropy,
    categorical_kl,
    conv_stages,
    kl_balance,
    mode_onehot,
    sample_onehot,
    symexp,
    symlog,
    unimix_logprobs,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_symlog_symexp_inverse():
    x = torch.tensor([-1e6, -123.4, -1.0, -1e-4, 0.0, 1e-4, 0.5, 7.0, 1e6], dtype=torch.float64)
    torch.testing.assert_close(symexp(symlog(x)), x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(symlog(torch.tensor([math.e - 1.0])), torch.tensor([1.0]))
    assert symlog(torch.tensor(-3.0)) == -symlog(torch.tensor(3.0))


def test_twohot_round_trip_and_expectation():
    th = TwoHot(255, -20.0, 20.0)
    x = torch.tensor([-500.0, -3.3, -1.0, 0.0, 0.01, 0.7, 1.0, 42.0, 1234.5])
    target = th.encode(x)
    assert target.shape == (9, 255)
    torch.testing.assert_close(target.sum(-1), torch.ones(9))
    assert ((target > 0).sum(-1) <= 2).all()  # at most two neighbouring bins
    # The expectation of the bins under the target is exactly symlog(x).
    torch.testing.assert_close((target * th.bins(x.device)).sum(-1), symlog(x), rtol=0, atol=1e-5)
    # Decoding logits that put exactly that mass on the bins gives x back.
    decoded = th.decode(torch.log(target))
    torch.testing.assert_close(decoded, x, rtol=1e-4, atol=1e-4)
    # Out of range clips to the edge bin.
    assert th.encode(torch.tensor([1e30]))[0, -1] == 1.0


def test_twohot_loss_is_cross_entropy():
    th = TwoHot(11, -5.0, 5.0)
    x = torch.tensor([0.3, -2.0])
    logits = torch.randn(2, 11, requires_grad=True)
    loss = th.loss(logits, x)
    expected = -(th.encode(x) * torch.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(loss, expected)
    loss.sum().backward()
    torch.testing.assert_close(logits.grad, torch.softmax(logits, -1).detach() - th.encode(x))


def test_unimix_keeps_probabilities_above_floor():
    logits = torch.tensor([[80.0, -80.0, -80.0, -80.0], [0.0, 0.0, 0.0, 0.0]])
    probs = unimix_logprobs(logits, 0.01).exp()
    assert (probs >= 0.01 / 4 - 1e-7).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    torch.testing.assert_close(probs[1], torch.full((4,), 0.25))


def test_straight_through_sample_is_onehot_with_gradient():
    logits = torch.randn(64, 8, 5, requires_grad=True)
    sample = sample_onehot(unimix_logprobs(logits, 0.01))
    assert torch.equal(sample.detach().sum(-1), torch.ones(64, 8))
    assert set(sample.detach().unique().tolist()) <= {0.0, 1.0}
    weights = torch.randn(5)
    (sample * weights).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    mode = mode_onehot(unimix_logprobs(logits, 0.01))
    assert torch.equal(mode.detach().argmax(-1), logits.detach().argmax(-1))


def test_samples_follow_the_probabilities():
    torch.manual_seed(0)
    probs = torch.tensor([0.1, 0.2, 0.7])
    logp = probs.log().expand(20000, 3)
    freq = sample_onehot(logp).mean(0)
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)


def _logp(*rows):
    return torch.tensor(rows).log()[None]  # [1, S, K]


def test_kl_balance_hand_computed_and_free_bits():
    p = _logp([0.5, 0.5]).requires_grad_(True)
    q = _logp([0.9, 0.1]).requires_grad_(True)
    value = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)  # 0.5108
    dyn, rep, kl = kl_balance(p, q, free_nats=0.1)
    for term in (dyn, rep, kl):
        assert term.item() == pytest.approx(value, abs=1e-6)
    # dyn trains only the prior, rep only the posterior.
    (g_post_dyn, g_prior_dyn) = torch.autograd.grad(dyn.sum(), [p, q], allow_unused=True)
    assert g_post_dyn is None or g_post_dyn.abs().sum() == 0
    assert g_prior_dyn.abs().sum() > 0
    (g_post_rep, g_prior_rep) = torch.autograd.grad(rep.sum(), [p, q], allow_unused=True)
    assert g_post_rep.abs().sum() > 0
    assert g_prior_rep is None or g_prior_rep.abs().sum() == 0
    # Below the free bits, both terms are the threshold and send no gradient at all.
    dyn, rep, _ = kl_balance(p, q, free_nats=1.0)
    assert dyn.item() == 1.0 and rep.item() == 1.0
    grads = torch.autograd.grad((0.5 * dyn + 0.1 * rep).sum(), [p, q], allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in grads)


def test_free_bits_on_the_batch_mean_still_train_the_steps_below_the_threshold():
    # Step 0 is below 1 nat (0.51), step 1 above (1.10): per step only step 1 gets gradient; on the mean
    # (0.81, below 1) neither does; with a threshold under the mean, both do.
    p = torch.stack([_logp([0.5, 0.5])[0], _logp([0.5, 0.5])[0]])
    q = torch.stack([_logp([0.9, 0.1])[0], _logp([0.97, 0.03])[0]]).requires_grad_(True)

    def prior_grad(**kw):
        dyn, _, _ = kl_balance(p, q, **kw)
        return torch.autograd.grad(dyn.sum(), q)[0].abs().sum((1, 2)), dyn

    per_step, dyn = prior_grad(free_nats=1.0)
    assert dyn.shape == (2,) and per_step[0] == 0 and per_step[1] > 0
    on_mean, dyn = prior_grad(free_nats=1.0, free_avg=True)
    assert dyn.shape == () and dyn.item() == 1.0 and on_mean.sum() == 0
    on_mean, dyn = prior_grad(free_nats=0.5, free_avg=True)
    assert bool((on_mean > 0).all())
    assert dyn.item() == pytest.approx(categorical_kl(p, q).mean().item(), abs=1e-6)


def test_kl_sums_over_latents_before_free_bits():
    # Two latents of 0.5108 nats each: 1.02 in total, above free_nats=1 although each alone is below.
    p = _logp([0.5, 0.5], [0.5, 0.5])
    q = _logp([0.9, 0.1], [0.9, 0.1])
    dyn, _, _ = kl_balance(p, q, free_nats=1.0)
    assert dyn.item() == pytest.approx(2 * 0.5108256, abs=1e-5)
    assert categorical_entropy(p).item() == pytest.approx(2 * math.log(2), abs=1e-6)


@pytest.mark.parametrize("size, final", [((64, 64), (4, 4)), ((96, 96), (6, 6)), ((32, 48), (4, 6)),
                                         ((64, 96), (4, 6)), ((128, 128), (4, 4)), ((36, 52), (5, 7))])
def test_cnn_encoder_decoder_shapes(size, final):
    h, w = size
    enc = ConvEncoder((h, w, 3), depth=4, min_res=4)
    assert enc.sizes[-1] == final
    x = torch.rand(2, h, w, 3) - 0.5
    e = enc(x)
    assert e.shape == (2, enc.widths[-1] * final[0] * final[1]) == (2, enc.out_dim)
    dec = ConvDecoder(10, (h, w, 3), depth=4, min_res=4)
    y = dec(torch.randn(2, 10))
    assert y.shape == (2, h, w, 3)
    y.square().mean().backward()
    assert all(p.grad is not None for p in dec.parameters())


def test_cnn_rejects_too_small_images_and_bad_mults():
    with pytest.raises(ValueError, match="too small"):
        conv_stages(6, 64, 4)
    with pytest.raises(ValueError, match="cnn.mults"):
        ConvEncoder((64, 64, 3), depth=4, mults=(1, 2))


def test_mlp_zero_init_head():
    head = MLP(6, 255, layers=2, units=16, out_scale=0.0)
    out = head(torch.randn(3, 5, 6))
    assert out.shape == (3, 5, 255) and torch.equal(out, torch.zeros_like(out))
    assert MLP(6, None, layers=2, units=16)(torch.randn(4, 6)).shape == (4, 16)


def test_step_linear_matches_autograd_and_gemm_conv_gradients():
    from wmlab.nn.blocks import _GemmWeightGradConv
    from wmlab.nn.tape import StepLinear

    torch.manual_seed(0)
    layer = torch.nn.Linear(5, 4).double()
    xs = [torch.randn(3, 5, dtype=torch.float64, requires_grad=True) for _ in range(6)]
    lin = StepLinear(layer, xs[0])
    h = torch.zeros(3, 4, dtype=torch.float64)
    for x in xs:  # a recurrence, so later steps depend on earlier ones
        h = torch.tanh(lin(x) + h)
    h.square().sum().backward()
    fast = [layer.weight.grad.clone(), layer.bias.grad.clone()] + [x.grad.clone() for x in xs]
    layer.zero_grad()
    for x in xs:
        x.grad = None
    h = torch.zeros(3, 4, dtype=torch.float64)
    for x in xs:
        h = torch.tanh(layer(x) + h)
    h.square().sum().backward()
    slow = [layer.weight.grad, layer.bias.grad] + [x.grad for x in xs]
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b)
    # The GEMM weight gradient of stride-2 (transposed) convolutions, odd sizes included.
    for transposed, k, p, size in [(False, 4, 1, 8), (False, 4, 1, 7), (True, 4, 1, 5), (True, 3, 0, 4)]:
        w = torch.randn((3, 4, k, k) if transposed else (4, 3, k, k), dtype=torch.float64, requires_grad=True)
        x = torch.randn(1, 3, size, size, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x, w: _GemmWeightGradConv.apply(x, w, transposed, p), (x, w),
                                        fast_mode=True)


def test_step_linear_frees_each_pass_graph():
    """The tape must not keep a pass's graph alive: a Dreamer run leaked its RSSM graph every update."""
    import gc
    import weakref

    from wmlab.nn.tape import StepLinear

    layer = torch.nn.Linear(4, 4)
    xs = torch.randn(6, 3, 4, requires_grad=True)

    def one_pass(backward: bool, retain: bool = False):
        # A recurrence: each step's input is the state the previous step's taped matmul made, as in the RSSM.
        lin = StepLinear(layer, xs[0])
        h = torch.zeros(3, 4)
        states = []
        for x in xs:
            h = torch.tanh(lin(h) + x)
            states.append(weakref.ref(h))
        if backward:
            h.sum().backward(retain_graph=retain)
            if retain:  # a second backward through the kept graph gives the same weight gradient again
                first = layer.weight.grad.clone()
                h.sum().backward()
                torch.testing.assert_close(layer.weight.grad, 2 * first)
        return states

    for backward, retain in ((True, False), (False, False), (True, True)):
        states = one_pass(backward, retain)
        gc.collect()
        kept = sum(ref() is not None for ref in states)
        assert kept == 0, f"a StepLinear pass (backward={backward}, retain_graph={retain}) kept {kept} states"
        layer.zero_grad()


def test_mse_sum_matches_autograd_reference():
    from wmlab.nn import mse_sum

    pred = torch.rand(2, 3, 4, 5, 3, dtype=torch.float64, requires_grad=True)
    image = torch.randint(0, 256, (2, 3, 4, 5, 3), dtype=torch.uint8)
    loss = mse_sum(pred, image, 3, target_scale=1 / 255)
    ref = (pred - image.double() / 255).square().sum((-3, -2, -1))
    assert loss.shape == (2, 3)
    torch.testing.assert_close(loss, ref.float(), rtol=1e-5, atol=1e-5)
    weights = torch.randn(2, 3)
    (g,) = torch.autograd.grad((loss * weights).sum(), pred)
    (g_ref,) = torch.autograd.grad((ref * weights.double()).sum(), pred)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)
    vec = torch.randn(4, 6, requires_grad=True)
    torch.testing.assert_close(mse_sum(vec, torch.zeros(4, 6), 1), vec.square().sum(-1))


def test_gemm_grad_convs_under_bf16_autocast_match_fp32():
    from wmlab.nn import GemmGradConv2d, GemmGradConvTranspose2d

    torch.manual_seed(0)
    for conv, size in [(GemmGradConv2d(128, 8, 4, 2, 1, bias=False), 8),
                       (GemmGradConvTranspose2d(8, 128, 4, 2, 1, bias=True), 4)]:
        x = torch.randn(2, conv.in_channels, size, size).contiguous(memory_format=torch.channels_last)
        ref = torch.autograd.grad(conv(x).square().sum(), conv.weight)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        assert y.dtype == torch.bfloat16
        got = torch.autograd.grad(y.float().square().sum(), conv.weight)[0]
        assert got.dtype == torch.float32
        assert (got - ref).norm() / ref.norm() < 0.02


def test_layer_norm_scale_and_bias_gradients_are_exact_under_bf16():
    """The norms' own gradients under bf16 autocast match fp32 (CPU's native bf16 kernel is off by ~10 %
    here, sums over rows in bf16); the output stays bf16 and equals the native kernel's without gradient."""
    from wmlab.nn import ChannelNorm, LayerNorm

    torch.manual_seed(0)
    for norm, x in [(LayerNorm(32, eps=1e-3), torch.randn(8192, 32)),
                    (ChannelNorm(16), torch.randn(32, 24, 24, 16).permute(0, 3, 1, 2))]:  # channels-last map
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
        x = x.bfloat16().requires_grad_()
        grad = torch.randn(x.shape).bfloat16()
        ref = torch.autograd.grad(norm(x.float()), [x, norm.weight, norm.bias], grad.float())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = norm(x)
            got = torch.autograd.grad(y, [x, norm.weight, norm.bias], grad)
            with torch.no_grad():
                fast = norm(x)
        assert y.dtype == fast.dtype == torch.bfloat16 and y.stride() == x.stride()
        torch.testing.assert_close(y.float(), fast.float(), atol=0.02, rtol=0.02)
        for name, a, r in zip(["input", "scale", "bias"], got, ref):
            assert a.dtype == r.dtype and (a.float() - r).norm() / r.norm() < 1e-3, name

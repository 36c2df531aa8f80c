"""ContextWM codec tests: shapes, gradients, the context path, train/eval behaviour, open loop, errors."""

import pytest
import torch

from wmlab.models import WorldModel, make_config
from wmlab.models.contextwm import ContextCodec

pytestmark = pytest.mark.usefixtures("one_thread")


def spec(size):
    return {"image": (*size, 3), "action_dim": 2, "action_discrete": False, "num_actions": None,
            "proprio_dim": None}


def model_for(size=(16, 16), seed=0, **overrides) -> WorldModel:
    torch.manual_seed(seed)
    return WorldModel(make_config("debug", codec="contextwm", **{"context.depth": 4, **overrides}), spec(size))


def batch_for(size=(16, 16), b=2, t=5, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    is_first = torch.zeros(b, t, dtype=torch.bool)
    is_first[:, 0] = True
    return {"image": torch.randint(0, 256, (b, t, *size, 3), generator=g, dtype=torch.uint8),
            "action": torch.rand(b, t, 2, generator=g) * 2 - 1, "reward": torch.rand(b, t, generator=g),
            "is_first": is_first, "is_terminal": torch.zeros(b, t, dtype=torch.bool)}


def features(model, b=2, t=4, seed=1):
    return torch.randn(b, t, model.feat_dim, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", [(16, 16), (20, 12)])
def test_shapes_fp32_and_bf16(size):
    model = model_for(size)
    assert isinstance(model.codec, ContextCodec) and len(model.codec.decoder.attn) >= 1
    assert not [name for name, m in model.named_modules() if type(m) is torch.nn.LayerNorm]
    batch = batch_for(size)
    assert model.codec.encode(batch["image"]).shape == (2, 5, model.codec.embed_dim)
    out = model.decode(features(model), batch["image"])
    assert out.shape == (2, 4, *size, 3) and out.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = model.loss(batch)
        out = model.decode(features(model), batch["image"])
    assert out.shape == (2, 4, *size, 3) and torch.isfinite(out.float()).all()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("skip, expected", [(1, [8, 16]), (0, [16, 32])])
def test_cross_attention_sits_at_the_configured_resolutions(skip, expected):
    model = model_for((64, 64), **{"context.attn_skip": skip, "context.attn_stages": 2})
    seen = []
    for attn in model.codec.decoder.attn:
        attn.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[-1]))
    with torch.no_grad():
        out = model.decode(features(model, b=1, t=2), batch_for((64, 64), b=1, t=2)["image"])
    assert out.shape == (1, 2, 64, 64, 3)
    assert seen == expected  # coarse to fine, as the decoder upsamples
    with pytest.raises(ValueError, match="context.attn_skip=-1 must be >= 0"):
        model_for((64, 64), **{"context.attn_skip": -1})


def test_loss_sends_gradient_to_context_encoder_and_attention():
    model = model_for(**{"context.token_dropout": 0.5, "context.erasing": 0.5})
    loss, metrics = model.loss(batch_for())
    assert torch.isfinite(loss) and "image" in metrics
    loss.backward()
    grads = {n: p.grad for n, p in model.codec.named_parameters()}
    ctx = [n for n in grads if n.startswith("context_encoder.")]
    attn = [n for n in grads if n.startswith("decoder.attn.") and n.rsplit(".", 2)[-2] in ("q", "kv", "out")]
    assert ctx and attn
    missing = [n for n in ctx + attn if grads[n] is None or grads[n].abs().sum() == 0]
    assert not missing, missing


def test_context_frame_changes_the_decoded_image():
    model = model_for().eval()
    feat = features(model)
    frames = batch_for(seed=2)["image"]
    other = frames.clone()
    other[0] = 255 - other[0]  # change only row 0's context
    with torch.no_grad():
        a, b = model.decode(feat, frames), model.decode(feat, other)
    assert not torch.allclose(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])  # each row reads its own context frame
    with torch.no_grad():  # eval mode reads the last frame only
        torch.testing.assert_close(model.decode(feat, frames[:, -1:]), a)


def test_eval_is_deterministic_and_train_augments():
    noisy = model_for(**{"context.token_dropout": 0.9, "context.erasing": 1.0}).eval()
    clean = model_for(seed=1).eval()
    clean.load_state_dict(noisy.state_dict())
    feat, frames = features(noisy), batch_for(seed=3)["image"]
    with torch.no_grad():
        a, b = noisy.decode(feat, frames), noisy.decode(feat, frames)
        ref = clean.decode(feat, frames)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, ref)
    one = frames[:, -1:]  # one context frame: the random choice of a frame plays no part
    dropping = model_for(**{"context.token_dropout": 0.9}).train()
    erasing = model_for(**{"context.erasing": 1.0}).train()
    with torch.no_grad():
        assert not torch.allclose(dropping.decode(feat, one), dropping.decode(feat, one))
        assert not torch.allclose(erasing.decode(feat, one), erasing.eval().decode(feat, one))


def test_open_loop():
    model = model_for()
    batch = batch_for(t=6, seed=4)
    out = model.open_loop(batch, context=3)
    assert out["pred"].shape == out["truth"].shape == (2, 3, 16, 16, 3)
    assert out["pred"].dtype == torch.uint8


def test_decode_without_frames_raises():
    model = model_for()
    with pytest.raises(ValueError, match="contextwm"):
        model.decode(features(model))
    with pytest.raises(ValueError, match="contextwm"):
        model.decode(features(model, b=3), batch_for()["image"])


def test_training_takes_one_uniformly_random_frame_per_clip_as_context():
    model = model_for().train()
    b, t = 3, 6
    frames = torch.arange(t, dtype=torch.uint8).view(1, t, 1, 1, 1).expand(b, t, 16, 16, 3).clone()  # frame i = i
    torch.manual_seed(0)
    picks = torch.stack([model.codec.context_frame(frames)[:, 0, 0, 0] for _ in range(600)])  # [600, b]
    for row in range(b):  # every frame of the clip is drawn, about equally often
        counts = torch.bincount(picks[:, row].long(), minlength=t)
        assert bool((counts > 600 / t * 0.6).all()), counts
    assert bool((picks[:, 0] != picks[:, 1]).any())  # rows draw independently
    model.eval()
    assert torch.equal(model.codec.context_frame(frames)[:, 0, 0, 0], torch.full((b,), t - 1, dtype=torch.uint8))

    # The world-model loss hands the decoder the batch's own clip to draw the context from.
    seen = []
    real = model.codec.context_frame
    model.codec.context_frame = lambda x: (seen.append(x), real(x))[1]
    batch = batch_for(t=t)
    model.train().loss(batch)
    assert len(seen) == 1 and torch.equal(seen[0], batch["image"])

"""Fréchet distances against hand-computed values; feature nets built with random weights and loaded from files."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from wmlab.eval import features as feat
from wmlab.eval.features import (
    FEATURE_NETS,
    FeatureNet,
    feature_stats,
    fid,
    frechet_distance,
    fvd,
    load_feature_net,
)


def _rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


def _random_cov(d: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_frechet_one_dimensional():
    m1, v1, m2, v2 = 1.0, 4.0, 3.0, 9.0
    expected = (m1 - m2) ** 2 + v1 + v2 - 2 * np.sqrt(v1 * v2)
    assert frechet_distance(m1, v1, m2, v2) == pytest.approx(expected, abs=1e-12)
    assert frechet_distance([m1], [[v1]], [m2], [[v2]]) == pytest.approx(5.0, abs=1e-12)


def test_frechet_diagonal_and_rotated():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    d1, d2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = ((mu1 - mu2) ** 2).sum() + d1.sum() + d2.sum() - 2 * np.sqrt(d1 * d2).sum()
    assert frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(expected, abs=1e-10)
    # Covariances sharing eigenvectors: the trace term is still Σ sqrt(a_i b_i).
    r = _rotation(3, 0)
    value = frechet_distance(mu1, r @ np.diag(d1) @ r.T, mu2, r @ np.diag(d2) @ r.T)
    assert value == pytest.approx(expected, abs=1e-10)


def test_frechet_general_covariances_match_eigenvalues_of_product():
    s1, s2 = _random_cov(5, 1), _random_cov(5, 2)
    mu1, mu2 = np.arange(5.0), np.ones(5)
    # s1 s2 is similar to a positive definite matrix: its eigenvalues are real and positive.
    trace_sqrt = np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_frechet_identical_is_zero_and_symmetric():
    s, mu = _random_cov(8, 3), np.linspace(-1, 1, 8)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-6
    singular = np.diag([2.0, 1.0, 0.0, 0.0])
    assert abs(frechet_distance(np.zeros(4), singular, np.zeros(4), singular)) < 1e-6
    s2, mu2 = _random_cov(8, 4), np.zeros(8)
    assert frechet_distance(mu, s, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu, s), rel=1e-9)
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(mu, s, mu[:4], s[:4, :4])


def test_feature_stats_matches_numpy():
    x = np.random.default_rng(5).normal(size=(20, 6)).astype(np.float32)
    mu, sigma = feature_stats(x)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-12)
    with pytest.raises(ValueError, match="2 samples"):
        feature_stats(x[:1])


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 200, (n, 16, 16, 3), dtype=np.uint8)


def _brighter(x: np.ndarray) -> np.ndarray:
    return np.clip(x.astype(np.int16) + 50, 0, 255).astype(np.uint8)


def test_fid_with_tiny_net():
    torch.manual_seed(0)
    net = load_feature_net("tiny", None, random=True)
    assert net.kind == "image" and not net.training
    assert not any(p.requires_grad for p in net.parameters())
    real = _images(24, 6)
    assert abs(fid(real, real, net, batch_size=10)) < 1e-6
    assert fid(real, _brighter(real), net) > 1e-3
    clips = real.reshape(4, 6, 16, 16, 3)
    assert fid(clips, _brighter(clips), net) == pytest.approx(fid(real, _brighter(real), net), rel=1e-9)
    with pytest.raises(ValueError, match="image feature net"):
        fid(real, real, load_feature_net("tiny", None, random=True, video=True))


def test_fvd_with_tiny_net():
    torch.manual_seed(1)
    net = load_feature_net("tiny", None, random=True, video=True, dim=16)
    assert net.kind == "video" and net.dim == 16
    real = np.random.default_rng(7).integers(0, 200, (12, 4, 16, 16, 3), dtype=np.uint8)
    assert net(real[:3]).shape == (3, 16)
    assert abs(fvd(real, real, net, batch_size=5)) < 1e-6
    assert fvd(real, _brighter(real), net) > 1e-3
    with pytest.raises(ValueError, match="video feature net"):
        fvd(real, real, load_feature_net("tiny", None, random=True))


@pytest.fixture(scope="module")
def inception() -> FeatureNet:
    torch.manual_seed(2)
    return load_feature_net("inception", None, random=True)


@pytest.fixture(scope="module")
def i3d() -> FeatureNet:
    torch.manual_seed(3)
    return load_feature_net("i3d", None, random=True)


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_inception_features_and_safetensors_round_trip(inception, tmp_path):
    state = inception.state_dict()
    assert state["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["fc.weight"].shape == (1008, 2048)
    images = _images(2, 8)
    out = inception(images)
    assert out.shape == (2, 2048) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and not torch.equal(out[0], out[1])
    path = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    loaded = load_feature_net("inception", str(path))
    assert _state_equal(inception, loaded)
    assert torch.equal(loaded(images), out)


def test_i3d_features_and_safetensors_round_trip(i3d, tmp_path):
    state = i3d.state_dict()
    assert state["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)
    assert state["Mixed_5c.b3b.bn.running_var"].shape == (128,)
    assert state["logits.conv3d.bias"].shape == (400,)
    clips = np.random.default_rng(9).integers(0, 256, (2, 9, 16, 16, 3), dtype=np.uint8)
    out = i3d(clips)
    assert out.shape == (2, 1024) and torch.isfinite(out).all() and not torch.equal(out[0], out[1])
    path = tmp_path / "i3d.safetensors"
    save_file(state, str(path))
    loaded = load_feature_net("i3d", path)
    assert _state_equal(i3d, loaded)
    assert torch.equal(loaded(clips), out)
    with pytest.raises(ValueError, match="at least 9 frames"):
        i3d(clips[:, :8])


def test_torch_state_dicts_load_with_weights_only(inception, i3d, tmp_path, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    state = {k: v for k, v in inception.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    assert _state_equal(inception, load_feature_net("inception", tmp_path / "pt_inception-2015-12-05-6726825d.pth"))
    torch.save({"state_dict": i3d.state_dict()}, tmp_path / "rgb_imagenet.pt")
    assert _state_equal(i3d, load_feature_net("i3d", str(tmp_path)))
    assert len(calls) == 2 and all(c.get("weights_only") is True and c.get("map_location") == "cpu" for c in calls)


def test_missing_weights_name_the_file(tmp_path):
    missing = tmp_path / "nowhere" / "pt_inception-2015-12-05-6726825d.pth"
    with pytest.raises(FileNotFoundError, match="pt_inception") as info:
        load_feature_net("inception", str(missing))
    assert str(missing) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="rgb_imagenet.pt"):
        load_feature_net("i3d", None)
    with pytest.raises(FileNotFoundError, match="tiny"):
        load_feature_net("tiny", tmp_path / "tiny.pt")


def test_bad_files_and_names(tmp_path):
    torch.manual_seed(4)
    net = load_feature_net("tiny", None, random=True)
    state = dict(net.state_dict())
    state["net.9.weight"] = state.pop("net.0.weight")
    path = tmp_path / "wrong.safetensors"
    save_file(state, str(path))
    with pytest.raises(ValueError, match="wrong.safetensors") as info:
        load_feature_net("tiny", path)
    assert "net.0.weight" in str(info.value) and "net.9.weight" in str(info.value)
    shaped = tmp_path / "shape.safetensors"
    save_file(load_feature_net("tiny", None, random=True, dim=8).state_dict(), str(shaped))
    with pytest.raises(ValueError, match="wrong shape"):
        load_feature_net("tiny", shaped)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pt"):
        load_feature_net("tiny", garbage)
    with pytest.raises(ValueError, match="i3d, inception, tiny"):
        load_feature_net("resnet", None)
    assert {"inception", "i3d", "tiny"} <= set(FEATURE_NETS)
    assert feat.InceptionI3D(output="logits").dim == 400

"""Genie: tokenizer, latent action model, MaskGIT dynamics, generation, held-out evaluation, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wmlab.models.genie import (STAGES, DynamicsConfig, Genie, GenieConfig, LAMConfig, LatentActionModel,
                                TokenizerConfig)
from wmlab.nn.st import FrameCache, STTransformer, VectorQuantizer, patchify, unpatchify

MOVES = np.array([[0, 0], [0, -2], [0, 2], [-2, 0], [2, 0]])  # stay, left, right, up, down


def square_clip(rng: np.random.Generator, length: int, size: int = 16, actions: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """A 4×4 square moved by its actions: frames uint8 [T,size,size,3], actions int64 [T]."""
    pos = rng.integers(4, size - 8, 2)
    actions = rng.integers(0, 5, length) if actions is None else actions
    frames = []
    for t in range(length):
        img = np.zeros((size, size, 3), np.uint8)
        img[..., 2] = 40
        img[pos[0]:pos[0] + 4, pos[1]:pos[1] + 4] = (250, 200, 30)
        frames.append(img)
        pos = np.clip(pos + MOVES[actions[t]], 0, size - 4)
    return np.stack(frames), actions.astype(np.int64)


def square_store(path, episodes: int = 12, length: int = 20, seed: int = 0):
    from wmlab.data.store import EpisodeStore

    rng = np.random.default_rng(seed)
    store = EpisodeStore(path, mode="a")
    for e in range(episodes):
        frames, actions = square_clip(rng, length)
        flags = np.arange(length)
        store.add({"image": frames, "action": actions, "reward": np.zeros(length, np.float32),
                   "is_first": flags == 0, "is_last": flags == length - 1, "is_terminal": np.zeros(length, bool)},
                  {"split": "test" if e % 4 == 0 else "train", "num_actions": 5, "seed": e})
    return store


def tiny_config(**dynamics) -> GenieConfig:
    return GenieConfig(tokenizer=TokenizerConfig(width=32, enc_depth=1, dec_depth=1, heads=2, patch=4, codes=32,
                                                 code_dim=8),
                       lam=LAMConfig(width=32, enc_depth=1, dec_depth=1, heads=2, patch=4, codes=4, code_dim=8),
                       dynamics=DynamicsConfig(width=32, depth=2, heads=2, **dynamics), max_frames=8)


SPEC = {"image": (16, 16, 3), "action_discrete": True, "num_actions": 5}


def batch_of(b: int = 2, t: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    clips = [square_clip(rng, t) for _ in range(b)]
    return {"image": torch.as_tensor(np.stack([c[0] for c in clips])),
            "action": torch.as_tensor(np.stack([c[1] for c in clips]))}


# ------------------------------------------------------------------------------------------ parts and shapes
def test_patchify_round_trip_and_bad_size():
    x = torch.randint(0, 255, (2, 3, 16, 12, 3), dtype=torch.uint8)
    p = patchify(x, 4)
    assert p.shape == (2, 3, 12, 48)
    assert torch.equal(unpatchify(p, 4, (16, 12), 3), x)
    assert torch.equal(p[0, 0, 1], x[0, 0, :4, 4:8].reshape(-1))  # token 1 is the second patch of row 0
    with pytest.raises(ValueError, match="not divisible by the patch size 5"):
        patchify(x, 5)


def test_time_attention_is_causal_and_cache_matches_full_pass():
    torch.manual_seed(0)
    net = STTransformer(16, 2, 2).eval()
    x = torch.randn(2, 5, 3, 16)
    full = net(x)
    changed = x.clone()
    changed[:, 3:] += 1.0
    assert torch.allclose(net(changed)[:, :3], full[:, :3], atol=1e-6)  # the future never reaches the past
    assert not torch.allclose(net(changed)[:, 3:], full[:, 3:])
    cache = FrameCache(window=8)
    steps = [net(x[:, t:t + 1], cache, commit=True) for t in range(5)]
    assert cache.length == 5 and cache.position == 5
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5)
    net(x[:, :1], cache)  # without commit nothing is added
    assert cache.length == 5
    small = FrameCache(window=3)
    for t in range(5):
        net(x[:, t:t + 1], small, commit=True)
    assert small.length == 3 and small.position == 5


def test_vq_straight_through_and_codebook_updates():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 4, decay=0.5)
    z = torch.randn(64, 4, requires_grad=True)
    codebook = vq.embed.clone()
    quant, idx, stats = vq(z)
    assert torch.allclose(quant, codebook[idx], atol=1e-6)  # forward: the chosen codes
    assert not torch.equal(vq.embed, codebook)  # training: the codebook moved toward its inputs
    (quant * torch.arange(4.0)).sum().backward()  # backward: the gradient reaches the input
    assert z.grad is not None and z.grad.abs().sum() > 0
    before = vq.embed.clone()
    vq.eval()
    with torch.no_grad():
        vq(torch.randn(64, 4))
    assert torch.equal(vq.embed, before)  # evaluation never moves the codebook
    vq.train()
    target = torch.nn.functional.normalize(torch.tensor([[1.0, 0, 0, 0]]), dim=-1).repeat(64, 1)
    for _ in range(20):
        vq(target.clone().requires_grad_())
    code = vq(target)[1][0]
    assert torch.allclose(vq.embed[code], target[0], atol=1e-3)  # the used code moved onto its inputs
    assert float(stats["perplexity"]) >= 1.0 and 1 <= float(stats["used"]) <= 8


def test_vq_restarts_dead_codes():
    """Codes nobody picks are re-seeded with inputs: a codebook collapsed onto one vector spreads out again."""
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4, decay=0.5, restart_below=0.5)
    one = torch.nn.functional.normalize(torch.ones(4), dim=0)
    for buf in (vq.embed, vq.ema_sum):
        buf.copy_(one.repeat(16, 1))
    z = torch.randn(256, 4)
    assert int(vq(z)[2]["used"]) == 1
    for _ in range(10):
        vq(z.clone().requires_grad_())
    assert int(vq(z.clone().requires_grad_())[2]["used"]) >= 12


def test_stage_losses_train_only_their_part():
    torch.manual_seed(0)
    model = Genie(tiny_config(), SPEC)
    assert not [name for name, m in model.named_modules() if type(m) is torch.nn.LayerNorm]
    batch = batch_of()
    for stage in STAGES:
        model.set_stage(stage)
        model.train()
        model.zero_grad(set_to_none=True)
        loss, metrics = model.loss(batch)
        loss.backward()
        for name, part in model.parts().items():
            grads = [p.grad for p in part.parameters() if p.grad is not None]
            if name == stage:
                assert grads and any(g.abs().sum() > 0 for g in grads), stage
            else:
                assert not grads, f"{name} got gradient in stage {stage}"
            assert part.training == (name == stage)
        assert all(torch.isfinite(v) for v in metrics.values())


def test_dynamics_masks_half_to_all_tokens_and_never_the_prompt_frame():
    torch.manual_seed(0)
    model = Genie(tiny_config(), SPEC, "dynamics")
    seen = {}

    def spy(module, args):
        seen["tokens"] = args[0].clone()

    handle = model.dynamics.register_forward_pre_hook(spy)
    model.loss(batch_of(4, 8))
    handle.remove()
    masked = seen["tokens"] == model.dynamics.mask_id
    assert not masked[:, 0].any()
    frac = masked[:, 1:].float().mean(-1)  # per frame
    assert frac.min() >= 0.2 and frac.mean() > 0.55 and frac.max() <= 1.0


def test_guided_model_uses_real_actions_and_rejects_bad_ones():
    model = Genie(GenieConfig(**{**tiny_config().__dict__, "guided": True}), SPEC, "dynamics")
    assert model.lam is None and model.num_actions == 5
    batch = batch_of()
    assert torch.equal(model.actions_of(batch), batch["action"][:, :-1])
    batch["action"][0, 0] = 7
    with pytest.raises(ValueError, match=r"action ids outside \[0, 4\]"):
        model.loss(batch)
    with pytest.raises(ValueError, match="guided Genie has no latent action model"):
        model.set_stage("lam")
    with pytest.raises(ValueError, match="needs discrete actions"):
        Genie(GenieConfig(guided=True), {"image": (16, 16, 3)})


# --------------------------------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("steps", [1, 3, 25])
def test_maskgit_runs_every_iteration(steps):
    torch.manual_seed(0)
    model = Genie(tiny_config(steps=steps), SPEC).eval()
    calls = []
    handle = model.dynamics.transformer.register_forward_hook(lambda *a: calls.append(1))
    prompt, actions = batch_of(1, 3)["image"][:, :2], torch.tensor([[1, 2, 3, 0]])
    frames = model.generate(prompt, actions, "autoregressive")
    assert frames.shape == (1, 3, 16, 16, 3) and frames.dtype == torch.uint8
    assert model.dynamics.iterations == 3 * steps
    # forward passes: the prompt, then per frame `steps` iterations and one to commit it
    assert len(calls) == 1 + 3 * (steps + 1)
    calls.clear()
    model.generate(prompt, actions, "one_go")
    assert model.dynamics.iterations == steps and len(calls) == steps
    handle.remove()


def test_unmasking_follows_the_cosine_schedule():
    torch.manual_seed(0)
    model = Genie(tiny_config(), SPEC).eval()
    masked_counts = []

    def spy(module, args):
        masked_counts.append(int((args[0] == module.mask_id).sum()))

    handle = model.dynamics.register_forward_pre_hook(spy)
    model.generate(batch_of(1, 2)["image"][:, :1], torch.tensor([[1]]), "autoregressive", steps=4)
    handle.remove()
    n = model.dynamics.tokens
    assert masked_counts[1:5] == [n, int(np.floor(n * np.cos(np.pi / 8))), int(np.floor(n * np.cos(np.pi / 4))),
                                  int(np.floor(n * np.cos(3 * np.pi / 8)))]
    assert masked_counts[5] == 0  # the commit pass sees the finished frame


def test_temperature_is_honoured():
    torch.manual_seed(0)
    model = Genie(tiny_config(), SPEC).eval()
    prompt, actions = batch_of(1, 2)["image"][:, :1], torch.tensor([[2, 2]])

    def run(temperature, seed):
        return model.generate(prompt, actions, steps=3, temperature=temperature,
                              generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(0.0, 1), run(0.0, 2))  # temperature 0: the most likely token, no randomness
    assert torch.equal(run(1.0, 3), run(1.0, 3))  # seeded
    assert not torch.equal(run(1.0, 3), run(1.0, 4))
    assert torch.equal(run(1e-4, 5), run(0.0, 5))  # a tiny temperature is the argmax


def test_generation_argument_errors():
    model = Genie(tiny_config(), SPEC).eval()
    prompt = batch_of(1, 2)["image"]
    with pytest.raises(ValueError, match="generate nothing"):
        model.generate(prompt, torch.tensor([[1]]))
    with pytest.raises(ValueError, match=r"action ids must be in \[0, 3\]"):
        model.generate(prompt, torch.tensor([[1, 9]]))
    with pytest.raises(ValueError, match="use method=autoregressive"):
        model.generate(prompt, torch.zeros(1, 12, dtype=torch.long), "one_go")
    assert model.generate(prompt, torch.zeros(1, 12, dtype=torch.long)).shape[1] == 11  # past the window


# ------------------------------------------------------------------------------------------ latent actions
def test_latent_action_codes_follow_the_motion(one_thread):
    """Trained on squares that move or stand still, the LAM gives a moving square another code than a still
    one, from the frames alone (the actions are never shown to it)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    lam = LatentActionModel(LAMConfig(width=32, enc_depth=1, dec_depth=1, heads=2, patch=4, codes=8, code_dim=8),
                            (16, 16, 3))
    opt = torch.optim.Adam(lam.parameters(), lr=2e-3)

    def clips(n, actions=None):
        return torch.as_tensor(np.stack([square_clip(rng, 4, actions=actions)[0] for _ in range(n)]))

    losses = []
    for _ in range(100):
        loss, _ = lam.loss({"image": clips(16)})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    lam.eval()
    still = lam.infer(clips(32, np.zeros(4, np.int64))).flatten()
    moving = torch.cat([lam.infer(clips(16, np.full(4, a))).flatten() for a in (1, 2, 3, 4)])
    top = still.mode().values
    assert (still == top).float().mean() > 0.9  # one code for "nothing moved"
    assert (moving != top).float().mean() > 0.6  # and mostly other codes when something did


# --------------------------------------------------------------------------------------- job, eval, CLI
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import wmlab.api as wm

    root = tmp_path_factory.mktemp("genie")
    square_store(root / "data")
    torch.manual_seed(0)
    wm.train("genie", preset="debug", data=str(root / "data"), run_dir=str(root / "run"),
             **{"trainer.eval_every": 10})
    return root


def test_stages_train_in_order_and_resume(trained):
    import wmlab.api as wm

    run = trained / "run"
    for stage in STAGES:
        lines = [json.loads(x) for x in (run / stage / "metrics.jsonl").read_text().splitlines()]
        assert lines[-1]["step"] == 20
    dyn = [json.loads(x) for x in (run / "dynamics" / "metrics.jsonl").read_text().splitlines()]
    assert any("heldout/psnr" in d and "heldout/copy_last_psnr" in d for d in dyn)
    tok = [d["train/tokenizer/mse"] for d in
           (json.loads(x) for x in (run / "tokenizer" / "metrics.jsonl").read_text().splitlines())
           if "train/tokenizer/mse" in d]
    assert tok[-1] < tok[0]
    before = (run / "dynamics" / "checkpoints" / "last").read_text()
    wm.train("genie", data=str(trained / "data"), run_dir=str(run))  # everything done: nothing retrains
    assert (run / "dynamics" / "checkpoints" / "last").read_text() == before


def test_evaluate_on_heldout_split_with_baseline_delta_and_feature_metrics(trained, tmp_path):
    from safetensors.torch import save_file

    import wmlab.api as wm
    from wmlab.eval.features import load_feature_net

    image_net = tmp_path / "tiny_image.safetensors"
    video_net = tmp_path / "tiny_video.safetensors"
    save_file(load_feature_net("tiny", random=True).state_dict(), str(image_net))
    save_file(load_feature_net("tiny", random=True, video=True).state_dict(), str(video_net))
    out = wm.evaluate(str(trained / "run"), horizon=10, context=2, fid_net="tiny", fid_weights=str(image_net),
                      fvd_net="tiny", fvd_weights=str(video_net))
    assert out["eval split"] == "test"
    for key in ("pooled_psnr", "copy_last_pooled_psnr", "psnr", "copy_last_psnr", "ssim", "copy_last_ssim",
                "tokenizer_psnr", "tokenizer_pooled_psnr", "delta_psnr_one",
                "delta_psnr_all", "fid", "copy_last_fid", "fvd", "copy_last_fvd"):
        assert np.isfinite(out[key]), key
    assert len(out["per_step"]["psnr"]) == 10 and len(out["per_step"]["baseline_psnr"]) == 10
    assert (trained / "run" / "report.html").exists() and (trained / "run" / "eval.json").exists()
    import imageio.v3 as iio

    video = iio.imread(out["videos"][0])
    assert video.shape == (12, 16, 32, 3)  # real beside generated, prompt + horizon frames
    with pytest.raises(ValueError, match="is the data this run trained on"):
        wm.evaluate(str(trained / "run"), split="train")
    with pytest.raises(FileNotFoundError, match="eval.fid_weights"):
        wm.evaluate(str(trained / "run"), fid_weights=str(tmp_path / "missing.pth"))


def test_generate_and_play_from_the_cli(trained, tmp_path):
    import imageio.v3 as iio

    from wmlab.cli import main

    out = tmp_path / "gen.mp4"
    assert main(["generate", str(trained / "run"), f"out={out}", "method=one_go", "prompt=2", "frames=5"]) == 0
    assert iio.imread(out).shape == (7, 32, 16, 3)
    out2 = tmp_path / "gen2.mp4"
    assert main(["generate", str(trained / "run"), f"out={out2}", "prompt=2", "frames=3", "actions=0,1,2"]) == 0
    assert iio.imread(out2).shape == (5, 32, 16, 3)
    session = tmp_path / "play.mp4"
    assert main(["play", str(trained / "run"), "actions=0,1,2,3", f"out={session}"]) == 0
    assert iio.imread(session).shape[0] == 5


def test_guided_run_and_missing_stage_errors(tmp_path):
    import wmlab.api as wm

    square_store(tmp_path / "data", episodes=8)
    with pytest.raises(FileNotFoundError, match="needs a trained tokenizer"):
        wm.train("genie", preset="debug", data=str(tmp_path / "data"), run_dir=str(tmp_path / "a"), stage="dynamics")
    wm.train("genie", preset="debug", data=str(tmp_path / "data"), run_dir=str(tmp_path / "tok"), stage="tokenizer",
             tokenizer_steps=5)
    # a guided run reusing that tokenizer trains only its dynamics
    result = wm.train("genie", preset="debug", data=str(tmp_path / "data"), run_dir=str(tmp_path / "g"),
                      guided=True, init=str(tmp_path / "tok"), stage="dynamics", dynamics_steps=5)
    assert list(result) == ["dynamics"]
    out = wm.evaluate(str(tmp_path / "g"), windows=2)
    assert np.isfinite(out["delta_psnr_one"])
    with pytest.raises(ValueError, match="no lam stage"):
        wm.train("genie", preset="debug", data=str(tmp_path / "data"), run_dir=str(tmp_path / "h"), guided=True,
                 stage="lam")

"""RSSM tests: shapes, fast sequence path == single steps, is_first resets, action shift, imagination."""

import pytest
import torch

from wmlab.models.config import RSSMConfig
from wmlab.models.rssm import RSSM, State, shift_actions

B, T, E, A = 3, 7, 10, 2


pytestmark = pytest.mark.usefixtures("one_thread")


def make_rssm(action_dim: int = A, initial: str = "learned") -> RSSM:
    torch.manual_seed(0)
    cfg = RSSMConfig(deter=16, stoch=3, classes=4, hidden=12, initial=initial)
    return RSSM(cfg, embed_dim=E, action_dim=action_dim)


def inputs(action_dim: int = A):
    torch.manual_seed(1)
    embed = torch.randn(B, T, E)
    action = torch.randn(B, T, action_dim)
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    return embed, action, is_first


def test_observe_shapes_and_features():
    rssm = make_rssm()
    post, prior = rssm.observe(*inputs())
    for s in (post, prior):
        assert s.deter.shape == (B, T, 16) and s.stoch.shape == (B, T, 3, 4) and s.logits.shape == (B, T, 3, 4)
        assert s.logits.dtype == torch.float32
    assert rssm.features(post).shape == (B, T, rssm.feat_dim) == (B, T, 16 + 12)
    assert torch.equal(post.deter, prior.deter)  # both come from the same GRU step


@pytest.mark.parametrize("initial", ["learned", "zeros"])
def test_observe_matches_single_steps(initial):
    rssm = make_rssm(initial=initial)
    embed, action, is_first = inputs()
    is_first[1, 4] = True
    post, prior = rssm.observe(embed, action, is_first, sample=False)
    state, prev = rssm.initial(B), torch.zeros(B, A)
    for t in range(T):
        p, q = rssm.obs_step(state, prev, embed[:, t], is_first[:, t], sample=False)
        torch.testing.assert_close(p.logits, post.logits[:, t])
        torch.testing.assert_close(q.logits, prior.logits[:, t])
        torch.testing.assert_close(p.deter, post.deter[:, t])
        state, prev = p, action[:, t]


def test_is_first_resets_state():
    rssm = make_rssm()
    embed, action, is_first = inputs()
    k = 4
    is_first[:, k] = True
    post, _ = rssm.observe(embed, action, is_first, sample=False)
    fresh, _ = rssm.observe(embed[:, k:], action[:, k:], is_first[:, k:], sample=False)
    torch.testing.assert_close(post.logits[:, k:], fresh.logits)
    torch.testing.assert_close(post.deter[:, k:], fresh.deter)
    # Without the reset the history leaks in.
    is_first[:, k] = False
    leaky, _ = rssm.observe(embed, action, is_first, sample=False)
    assert not torch.allclose(leaky.deter[:, k:], fresh.deter)


def test_shift_actions_alignment():
    action = torch.arange(1, 7, dtype=torch.float32).view(1, 6, 1)
    is_first = torch.tensor([[True, False, False, True, False, False]])
    prev = shift_actions(action, is_first)
    assert prev.flatten().tolist() == [0.0, 1.0, 2.0, 0.0, 4.0, 5.0]
    prev = shift_actions(action, torch.zeros(1, 6, dtype=torch.bool), prev_action=torch.tensor([[9.0]]))
    assert prev.flatten().tolist() == [9.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_action_changes_only_later_steps():
    rssm = make_rssm()
    embed, action, is_first = inputs()
    t = 3
    post, prior = rssm.observe(embed, action, is_first, sample=False)
    changed = action.clone()
    changed[:, t] += 1.0
    post2, prior2 = rssm.observe(embed, changed, is_first, sample=False)
    torch.testing.assert_close(post2.deter[:, : t + 1], post.deter[:, : t + 1])
    torch.testing.assert_close(prior2.logits[:, : t + 1], prior.logits[:, : t + 1])
    assert not torch.allclose(prior2.deter[:, t + 1], prior.deter[:, t + 1])


def test_imagine_with_actions_and_policy():
    rssm = make_rssm()
    post, _ = rssm.observe(*inputs())
    start = post.map(lambda x: x[:, -1])
    traj = rssm.imagine(start, actions=torch.randn(B, 5, A))
    assert traj.deter.shape == (B, 5, 16) and traj.stoch.shape == (B, 5, 3, 4)
    calls = []

    def policy(state: State) -> torch.Tensor:
        calls.append(state.deter.shape)
        return torch.tanh(state.deter[:, :A])

    traj = rssm.imagine(start, policy=policy, horizon=4)
    assert traj.deter.shape == (B, 4, 16) and len(calls) == 4
    # Deterministic imagination equals repeated img_step.
    acts = torch.randn(B, 3, A)
    traj = rssm.imagine(start, actions=acts, sample=False)
    state = start
    for h in range(3):
        state = rssm.img_step(state, acts[:, h], sample=False)
        torch.testing.assert_close(state.deter, traj.deter[:, h])
    with pytest.raises(ValueError, match="exactly one"):
        rssm.imagine(start)


def test_action_free_rssm():
    rssm = make_rssm(action_dim=0)
    embed, action, is_first = inputs(0)
    post, prior = rssm.observe(embed, action, is_first)
    assert post.deter.shape == (B, T, 16)
    traj = rssm.imagine(post.map(lambda x: x[:, -1]), actions=torch.zeros(B, 6, 0))
    assert traj.deter.shape == (B, 6, 16)


def test_gradients_reach_every_rssm_parameter():
    rssm = make_rssm()
    post, prior = rssm.observe(*inputs())
    loss = rssm.features(post).square().mean() + prior.logits.exp().square().mean()
    loss.backward()
    missing = [n for n, p in rssm.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_taped_loop_gradients_match_single_steps():
    """observe/imagine compute loop weight gradients in one GEMM; they must equal plain autograd's."""
    rssm = make_rssm()
    embed, action, is_first = inputs()
    is_first[0, 3] = True

    def grads(loss):
        rssm.zero_grad()
        loss.backward()
        return {n: p.grad.clone() for n, p in rssm.named_parameters()}

    post, prior = rssm.observe(embed, action, is_first, sample=False)
    traj = rssm.imagine(post.map(lambda x: x[:, -1]), actions=action[:, :4], sample=False)
    fast = grads(rssm.features(post).square().mean() + prior.logits.exp().square().mean()
                 + rssm.features(traj).square().mean())
    state, prev, posts, priors = rssm.initial(B), torch.zeros(B, A), [], []
    for t in range(T):
        p, q = rssm.obs_step(state, prev, embed[:, t], is_first[:, t], sample=False)
        posts.append(p)
        priors.append(q)
        state, prev = p, action[:, t]
    post, prior = State.stack(posts), State.stack(priors)
    imagined = []
    for h in range(4):
        state = rssm.img_step(state, action[:, h], sample=False)
        imagined.append(state)
    slow = grads(rssm.features(post).square().mean() + prior.logits.exp().square().mean()
                 + rssm.features(State.stack(imagined)).square().mean())
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-4, atol=1e-6, msg=name)

"""course.lr_find: the range test restores everything it touched, stops on divergence, and finds the
stable range of a quadratic whose answer is known (gradient descent on (a/2)(w - t)^2 diverges above 2/a)."""
import math

import pytest
import torch
from torch import nn

from course.lr_find import lr_find


def quadratic(a):
    """A one-weight model whose loss is (a/2)(w - t)^2, targets t alternating 0.9 and 1.1, and that loss."""
    w = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        w.weight.fill_(3.0)
    batches = [(torch.ones(1, 1), torch.full((1, 1), t)) for t in (0.9, 1.1)]
    return w, batches, lambda out, y: a / 2 * ((out - y) ** 2).sum()


@pytest.mark.parametrize("a", [1.0, 4.0, 16.0])
def test_on_a_quadratic_it_diverges_past_2_over_a_and_suggests_a_stable_rate(a):
    w, batches, loss = quadratic(a)
    result = lr_find(w, batches, optimizer=torch.optim.SGD(w.parameters(), lr=0.1), loss_fn=loss,
                     start=1e-4, end=10, steps=100)
    assert result.stopped == "diverged" and len(result.lrs) < 100
    assert result.lrs[-1] > 2 / a, "below 2/a gradient descent on this quadratic cannot diverge"
    assert 2 / a / 100 < result.suggestion < 2 / a, \
        f"suggested {result.suggestion} for a stable range up to {2 / a}"
    assert result.lrs == sorted(result.lrs)
    assert len(result.losses) == len(result.raw_losses) == len(result.lrs)


def test_the_suggestion_scales_with_the_curvature():
    found = {}
    for a in (1.0, 16.0):
        w, batches, loss = quadratic(a)
        found[a] = lr_find(w, batches, optimizer=torch.optim.SGD(w.parameters(), lr=0.1), loss_fn=loss,
                           start=1e-4, end=10, steps=100).suggestion
    assert 8 < found[1.0] / found[16.0] < 32, f"16 times the curvature, about 1/16 the rate: {found}"


def small_bn_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def test_model_optimizer_buffers_flags_modes_grads_and_random_state_come_back_bit_identical():
    net = small_bn_net()
    batches = [(torch.randn(6, 3, 8, 8), torch.randint(0, 3, (6,))) for _ in range(3)]
    net[0].requires_grad_(False)                       # a frozen first layer stays frozen
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    for x, y in batches:                               # an optimizer with moments, a model with grads
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net[1].eval()                                      # one BatchNorm layer in eval mode, the rest training
    before = {k: v.clone() for k, v in net.state_dict().items()}
    grads = [None if p.grad is None else p.grad.clone() for p in net.parameters()]
    flags = [p.requires_grad for p in net.parameters()]
    modes = [m.training for m in net.modules()]
    opt_before = {k: {n: t.clone() if torch.is_tensor(t) else t for n, t in v.items()}
                  for k, v in opt.state_dict()["state"].items()}
    lr_before = [g["lr"] for g in opt.param_groups]
    rng = torch.get_rng_state()

    seen = []
    for optimizer in (None, opt):                      # the course's AdamW, then the caller's optimizer
        result = lr_find(net, batches, optimizer=optimizer, steps=30, end=1.0,
                         before_epoch=lambda m: seen.append(m[1].training))
        assert len(set(result.raw_losses)) > 5, "the sweep trained (the losses changed)"
        assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()), \
            "parameters and BatchNorm buffers (running mean, var, batches tracked) exactly as before"
        assert [p.requires_grad for p in net.parameters()] == flags
        assert [m.training for m in net.modules()] == modes
        assert all((g is None and p.grad is None) or torch.equal(g, p.grad)
                   for g, p in zip(grads, net.parameters()))
        after = opt.state_dict()["state"]
        assert after.keys() == opt_before.keys() and all(
            torch.equal(after[k][n], t) if torch.is_tensor(t) else after[k][n] == t
            for k, v in opt_before.items() for n, t in v.items()), "the optimizer's moments and step counts"
        assert [g["lr"] for g in opt.param_groups] == lr_before
        assert torch.equal(torch.get_rng_state(), rng), "the random state as before (dropout, shuffling)"
    assert seen == [True, True], "before_epoch is called after model.train()"


def test_it_stops_when_the_loss_diverges_and_on_bad_arguments():
    net = small_bn_net(1)
    batches = [(torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))) for _ in range(2)]
    result = lr_find(net, batches, start=1e-5, end=1e4, steps=200)
    assert result.stopped == "diverged" and len(result.lrs) < 200
    assert not math.isfinite(result.losses[-1]) or result.losses[-1] > 4 * min(result.losses)
    assert math.isfinite(result.suggestion) and result.suggestion < result.lrs[-1] / 10
    with pytest.raises(ValueError, match="start < end"):
        lr_find(net, batches, start=1.0, end=0.1)
    with pytest.raises(ValueError, match="no batches"):
        lr_find(net, [], steps=5)
    net.requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to train"):
        lr_find(net, batches)


def test_discriminative_rates_keep_their_ratios_during_the_sweep():
    net = small_bn_net(2)
    batches = [(torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,)))]
    seen = []
    real_step = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        seen.append(sorted({g["lr"] for g in self.param_groups}))
        return real_step(self, *args, **kwargs)

    torch.optim.AdamW.step = spy
    try:
        lr_find(net, batches, layer_lrs=[(net[:7], 0.1), (net[7:], 1.0)], start=1e-4, end=1e-2, steps=3)
    finally:
        torch.optim.AdamW.step = real_step
    assert [[round(r, 12) for r in step] for step in seen] == [[1e-5, 1e-4], [1e-4, 1e-3], [1e-3, 1e-2]]

"""Batch-norm statistics recomputed for the final weights (equilens.models.batchnorm)."""

import pytest
import torch
from torch import nn

from equilens.evaluation.equivariance import train_briefly
from equilens.models import create_model
from equilens.models.batchnorm import batch_norm_layers, recompute_batch_norm


def _stats(model):
    return [{k: v.clone() for k, v in m.state_dict().items() if "running" in k} for m in batch_norm_layers(model)]


def test_statistics_are_the_average_over_the_batches():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 3)
    bn = nn.BatchNorm2d(4)
    model = nn.Sequential(conv, bn, nn.ReLU(), nn.Dropout(0.5)).eval()
    bn.running_mean.fill_(7.0)
    bn.running_var.fill_(0.01)
    batches = [torch.randn(5, 1, 8, 8) * (i + 1) + i for i in range(3)]
    params = [p.clone() for p in model.parameters()]
    assert recompute_batch_norm(model, batches) == 15
    with torch.no_grad():
        feats = [conv(x) for x in batches]
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.transpose(0, 1).reshape(4, -1).var(dim=1, unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-5, atol=1e-5)
    assert not model.training and not bn.training and bn.momentum == 0.1  # mode and momentum restored
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters(), strict=True))


def test_nothing_to_average_leaves_the_statistics():
    model = create_model("cnn_small", num_outputs=3, widths=[4, 8]).train()
    before = _stats(model)
    assert recompute_batch_norm(model, []) == 0
    assert recompute_batch_norm(model, [torch.randn(1, 1, 16, 16)]) == 0  # one image: no variance
    assert all(torch.equal(a[k], b[k]) for a, b in zip(before, _stats(model), strict=True) for k in a)
    assert model.training
    assert recompute_batch_norm(nn.Linear(3, 2), [torch.randn(4, 3)]) == 0


@pytest.mark.parametrize("name", ["steerable_d8", "steerable_so2", "harmonic_net", "e2wrn16_4_d8", "resnet18"])
def test_eval_mode_then_matches_the_batch_statistics(name):
    """After recomputing over one large batch, eval mode on it gives what training mode (that batch's own
    statistics) gives, for torch's and escnn's batch norms alike; with stale statistics it does not."""
    torch.manual_seed(0)
    model = create_model(name, num_outputs=3)
    layers = batch_norm_layers(model)
    assert layers, name
    x = torch.randn(48, 1, 32, 32)
    with torch.no_grad():
        model.train()
        reference = model(x)
        model.eval()
        stale = model(x)  # statistics of one step with momentum 0.1
    stale_error = float((stale - reference).abs().max())
    assert stale_error > 0.05 * float(reference.abs().max())
    assert recompute_batch_norm(model, [x]) == 48
    with torch.no_grad():
        error = float((model(x) - reference).abs().max())
    # not zero: training mode divides by the biased variance, the running one is unbiased (a factor
    # (n - 1)/n per layer, n = 48 x the map's pixels, which compounds over ResNet-18's 20 layers and 1x1 maps)
    assert error < 0.1 * stale_error, (error, stale_error)


def test_train_briefly_leaves_the_statistics_of_its_final_weights():
    torch.manual_seed(0)
    images, labels = torch.randn(40, 1, 16, 16), torch.randint(0, 3, (40,))
    model = create_model("cnn_small", num_outputs=3, widths=[4, 8])
    train_briefly(model, images, labels, 2, torch.Generator().manual_seed(0), batch_size=8, lr=0.05)
    assert not model.training
    after = _stats(model)
    pick = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    recompute_batch_norm(model, (images[pick[i:i + 8]] for i in range(0, 40, 8)))
    for a, b in zip(after, _stats(model), strict=True):
        for k in a:
            torch.testing.assert_close(a[k], b[k])
    # the moving averages alone (bn_batches=0) are another thing
    torch.manual_seed(0)
    lagging = create_model("cnn_small", num_outputs=3, widths=[4, 8])
    train_briefly(lagging, images, labels, 2, torch.Generator().manual_seed(0), batch_size=8, lr=0.05, bn_batches=0)
    assert any(not torch.allclose(a[k], b[k], atol=1e-4) for a, b in zip(after, _stats(lagging), strict=True)
               for k in a)

"""Plain-torch baselines: shapes, gradients, input checks."""

import pytest
import torch

from equilens.errors import ModelError
from equilens.models import create_model


@pytest.mark.parametrize("name", ["resnet18", "cnn_small"])
@pytest.mark.parametrize("size", [31, 32])
def test_baseline_shape_and_grad(name, size):
    gen = torch.Generator().manual_seed(0)
    kwargs = {"width": 0.25} if name == "resnet18" else {}
    model = create_model(name, in_channels=2, num_outputs=5, **kwargs)
    x = torch.randn(3, 2, size, size, generator=gen)
    out = model(x)
    assert out.shape == (3, 5)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert model.num_features == model.forward_features(x).shape[1]


def test_resnet18_has_paper_parameter_count():
    # ResNet-18 for 1000 classes, 3 input channels: 11,689,512 parameters (the standard count).
    model = create_model("resnet18", in_channels=3, num_outputs=1000)
    assert sum(p.numel() for p in model.parameters()) == 11_689_512


def test_baseline_bad_input():
    model = create_model("cnn_small", in_channels=1)
    with pytest.raises(ModelError, match="1 input channel"):
        model(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ModelError, match="at least 8x8"):
        model(torch.zeros(1, 1, 4, 4))

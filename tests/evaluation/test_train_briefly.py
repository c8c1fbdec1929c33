"""``train_briefly``'s augmentation: every model of an off-grid comparison can be trained on transformed batches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from equilens.errors import ConfigError
from equilens.evaluation.equivariance import train_briefly


class _Recorder(nn.Module):
    """A linear classifier that keeps every training batch it is shown."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 3)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(x.detach().clone())
        return self.linear(x.flatten(1))


def _seen(augmentation: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
    images = torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    model = _Recorder()
    train_briefly(model, images, torch.arange(12) % 3, 2, torch.Generator().manual_seed(0), batch_size=4,
                  augmentation=augmentation)
    return images, model.seen


def _quarter_turns(img: torch.Tensor) -> list[torch.Tensor]:
    return [torch.rot90(img, k, dims=(-2, -1)) for k in range(4)]


def test_no_augmentation_shows_the_images_themselves():
    images, seen = _seen("none")
    for batch in seen:
        assert all(any(torch.equal(x, im) for im in images) for x in batch)


def test_rot90_shows_quarter_turns_of_the_images_not_only_the_images():
    images, seen = _seen("rot90")
    shown = [x for batch in seen for x in batch]
    assert all(any(torch.equal(x, t) for im in images for t in _quarter_turns(im)) for x in shown)
    assert not all(any(torch.equal(x, im) for im in images) for x in shown)


def test_rotate_shows_images_at_other_angles():
    images, seen = _seen("rotate")
    shown = [x for batch in seen for x in batch]
    assert not any(any(torch.equal(x, t) for im in images for t in _quarter_turns(im)) for x in shown)


def test_unknown_augmentation_names_the_valid_ones():
    with pytest.raises(ConfigError, match="rotate\\+flip"):
        _seen("rotation")

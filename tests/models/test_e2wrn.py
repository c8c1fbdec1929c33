"""Equivariant Wide ResNet options: restriction schedule, field scaling, the paper configuration."""

from __future__ import annotations

import math

import pytest
import torch

from equilens.errors import ModelError
from equilens.evaluation.equivariance import calibrate_batchnorm, relative_change, synthetic_lens_images
from equilens.models import create_model, get_entry
from equilens.models.symmetry import GRID_TRANSFORMS, exact_grid_symmetries


def test_restriction_is_an_option_and_names_its_chain():
    torch.manual_seed(0)
    model = create_model("e2wrn10_1_d4", restrict=(4, 2, 1), width=0.5)
    assert model.symmetry == "D4->D2->D1"
    assert exact_grid_symmetries(model.symmetry) == ("flip_lr",)
    x = synthetic_lens_images(4, 30, torch.Generator().manual_seed(2)).double()
    model = calibrate_batchnorm(model.double(), x)
    with torch.no_grad():
        ref = model(x)
        assert relative_change(model(GRID_TRANSFORMS["flip_lr"](x)), ref) < 1e-5  # escnn bases are float32
        assert relative_change(model(GRID_TRANSFORMS["rot90"](x)), ref) > 1e-4  # D1 only: no rotation
    assert create_model("e2wrn10_1_d4", width=0.5).symmetry == "D4"  # unrestricted: the registry's


@pytest.mark.parametrize("restrict", [(4, 3, 1), (2, 4, 1), (4, 2), (8, 4, 1)])
def test_bad_restriction_names_the_rule(restrict):
    with pytest.raises(ModelError, match="each dividing the one before"):
        create_model("e2wrn10_1_d4", restrict=restrict)


def test_field_scalings():
    """fields="channels": channels / |G| fields; "params" (Weiler & Cesa): channels / sqrt(|G|)."""
    plain = create_model("e2wrn10_4_c4")  # last stage 256 channels, |G| = 4
    paper = create_model("e2wrn10_4_c4", fields="params")
    assert plain.num_features == 256 // 4
    assert paper.num_features == round(256 / math.sqrt(4))
    with pytest.raises(ModelError, match="fields must be one of channels, params"):
        create_model("e2wrn10_1_c4", fields="many")


def test_paper_configuration_is_built_on_demand():
    entry = get_entry("e2wrn16_8_d8_paper")
    assert entry.symmetry == "D8->D4->D1" and entry.family == "e2wrn"
    model = create_model("e2wrn10_1_d8_paper", width=0.25)  # same options, smaller
    assert model.symmetry == "D8->D4->D1"
    assert model.head[0].p == pytest.approx(0.3)
    stem_conv = model.body[0][0].module
    assert stem_conv.kernel_size == 5

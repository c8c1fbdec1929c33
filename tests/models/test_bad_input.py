"""Clear errors for bad names, options and inputs."""

import pytest
import torch

from equilens.errors import ModelError
from equilens.models import create_model, list_models, load_model


def test_unknown_name_lists_valid_names():
    with pytest.raises(ModelError) as err:
        create_model("resnet19")
    message = str(err.value)
    for name in ("resnet18", "steerable_d4", "e2wrn16_4_d8"):
        assert name in message
    assert "e2wrn{depth}" in message  # the family patterns are named too


@pytest.mark.parametrize("name, supported", [
    ("steerable_c5", "1, 2, 4, 8, 12, 16"),
    ("steerable_d7", "1, 2, 4, 8, 12, 16"),
    ("e2wrn16_4_d5", "1, 2, 4, 8, 12, 16"),
    ("e2wrn15_4_d8", "6n+4"),
    ("e2wrn16_4_c1_r", "nothing to restrict"),
])
def test_unsupported_family_values(name, supported):
    with pytest.raises(ModelError, match=supported.replace("+", r"\+")):
        create_model(name)


def test_family_pattern_builds_unlisted_names():
    model = create_model("e2wrn10_1_c4", width=0.5)
    assert model.symmetry == "C4"
    assert "e2wrn10_1_c4" not in list_models()


def test_unknown_option_is_a_model_error():
    with pytest.raises(ModelError, match="unexpected keyword"):
        create_model("steerable_d4", widht=0.5)


@pytest.mark.parametrize("name", ["resnet18", "steerable_d4", "e2wrn10_2_d4", "steerable_so2"])
def test_wrong_channels_and_too_small_images(name):
    kwargs = {"resnet18": {"width": 0.25}, "steerable_d4": {"width": 0.5},
              "steerable_so2": {"width": 0.5}}.get(name, {"width": 0.25})
    model = create_model(name, in_channels=1, **kwargs)
    with pytest.raises(ModelError, match="1 input channel"):
        model(torch.zeros(1, 2, 40, 40))
    small = model.min_input_size - 1
    with pytest.raises(ModelError, match=f"at least {model.min_input_size}x{model.min_input_size} px"):
        model(torch.zeros(1, 1, small, small))
    model.eval()
    assert model(torch.zeros(1, 1, model.min_input_size, model.min_input_size)).shape == (1, 3)


def test_bad_checkpoints(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model("cnn_small", tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save(create_model("cnn_small", widths=(8, 8)).state_dict(), other)
    with pytest.raises(ModelError, match="does not fit model .cnn_small."):
        load_model("cnn_small", other)
    junk = tmp_path / "junk.pt"
    torch.save([1, 2, 3], junk)
    with pytest.raises(ModelError, match="expected a state_dict"):
        load_model("cnn_small", junk)


def test_lightning_checkpoint_meta_counters_check_and_hint(tmp_path):
    """read_checkpoint strips the 'model.' prefix and returns the run description with Lightning's counters
    (read once); load_model hands that meta to check_meta before building and puts the caller's hint in
    the message when the weights do not fit."""
    from equilens.models import read_checkpoint

    torch.manual_seed(0)
    model = create_model("cnn_small", widths=(8, 8), num_outputs=2)
    run = {"model": "cnn_small", "model_kwargs": {"widths": [8, 8]}, "equilens_version": "0.0.1"}
    path = tmp_path / "run.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()} | {"loss.w": torch.ones(1)},
                "equilens": run, "epoch": 4, "global_step": 40}, path)
    state, meta = read_checkpoint(path)
    assert set(state) == set(model.state_dict())
    assert meta == {**run, "epoch": 4, "global_step": 40}
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    assert read_checkpoint(plain)[1] == {}

    seen = []
    loaded = load_model("cnn_small", path, check_meta=seen.append)
    assert seen == [meta] and not loaded.training and loaded.num_outputs == 2
    x = torch.rand(2, 1, 32, 32)
    model.eval()
    assert torch.equal(loaded(x), model(x))

    def refuse(m):
        raise ModelError(f"not this run's (epoch {m['epoch']})")

    with pytest.raises(ModelError, match=r"not this run's \(epoch 4\)"):
        load_model("resnet18", path, check_meta=refuse)  # before the model-name check
    with pytest.raises(ModelError, match="holds model 'cnn_small', not 'resnet18'"):
        load_model("resnet18", path)
    with pytest.raises(ModelError, match=r"does not fit model 'cnn_small'(.|\n)*; the caller asked for 3 outputs; "
                                         r"it was made by another architecture, or by equilens 0\.0\.1 whose"):
        load_model("cnn_small", path, num_outputs=3, hint="the caller asked for 3 outputs")


def test_checkpoint_state_has_no_escnn_caches_and_loads_in_either_mode(tmp_path):
    """The saved state is the same in train and eval mode (no derived filter caches) and loads back."""
    from equilens.models import derived_state_keys, load_weights, state_dict_for_checkpoint

    torch.manual_seed(0)
    model = create_model("steerable_c4", width=0.25)
    model.eval()  # escnn adds its expanded filters to state_dict() now
    assert set(model.state_dict()) - set(state_dict_for_checkpoint(model)) <= derived_state_keys(model)
    assert set(model.state_dict()) != set(state_dict_for_checkpoint(model))
    model.train()
    assert set(state_dict_for_checkpoint(model)) == set(model.state_dict())
    other = create_model("steerable_c4", width=0.25).eval()
    load_weights(other, state_dict_for_checkpoint(model))
    assert other.training is False
    x = torch.rand(2, 1, 20, 20)
    model.eval()
    assert torch.allclose(other(x), model(x))
    with pytest.raises(ModelError, match="does not fit model 'steerable_c4'"):
        load_weights(other, {k: v for k, v in state_dict_for_checkpoint(model).items() if "head" not in k})


def test_checkpoint_of_the_former_steerable_layout_is_refused_clearly(tmp_path):
    """steerable_* now pool after the ReLU (anti-aliased); weights saved with the former layout
    (pool="max", batch norm after the pool) are refused with a ModelError, not loaded wrongly."""
    old = create_model("steerable_d4", width=0.5, pool="max")
    path = tmp_path / "old.pt"
    torch.save(old.state_dict(), path)
    with pytest.raises(ModelError, match="does not fit model 'steerable_d4'"):
        load_model("steerable_d4", path, width=0.5)
    assert load_model("steerable_d4", path, width=0.5, pool="max") is not None

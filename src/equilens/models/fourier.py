"""Steerable CNNs whose features are band-limited functions on SO(2) or O(2), with the nonlinearity applied
to samples of those functions (the Fourier nonlinearity of Cesa, Lang and Weiler 2022, "A program to build
E(N)-equivariant steerable CNNs", ICLR; escnn's ``FourierPointwise``).

A regular C_N / D_N field stores a function on the group's N (2N) elements; its ReLU is exactly
equivariant for those elements only, and a rotation between them (15 degrees for D8) moves the field's
values by a fraction of a channel, which a pointwise ReLU does not follow. Here a field stores the Fourier
coefficients of a function on the whole circle (all irreps of frequency 0..L, each as often as its
dimension: :meth:`escnn.group.Group.spectral_regular_representation`), the convolutions are steerable for
every angle in the continuum, and the ReLU is evaluated on ``group_samples`` rotations (for O(2) also
their reflections) and projected back to frequencies 0..L. With more samples than the 2L + 1 the field
needs, the nonlinearity is close to equivariant at every angle (a finer grid on the group, as
:class:`~equilens.models.steerable.FineGridNonlinearity` is a finer grid in space).

Normalisation. escnn's ``IIDBatchNorm2d`` on the Fourier coefficients (``norm="iid"``) left these nets
training far slower than the D8 net (loss 0.70 against 0.11 after 5 short epochs on lens data): it scales
every frequency to unit variance and shifts only the frequency-0 coefficient, which moves the sampled
function by a fraction of its spread, so the ReLU's threshold is hard to learn. The default
``norm="samples"`` batch-normalises the sampled values instead, per field over images, pixels and samples
(mean, variance, a learnt scale and shift), as ``InnerBatchNorm`` does for a regular field; with more samples
than the band needs these statistics are exact invariants (Parseval). It trained as fast as D8 there
(0.10).

Exactness on the pixel grid: the sampling grid of the nonlinearity contains the 90-degree rotations (and,
for O(2), the reflections of the square grid) when ``group_samples`` is a multiple of 4, the filters are
sampled at positions symmetric about the centre, and the pooling is :class:`SymmetricPool2d`, so 90-degree
rotations (and flips) stay exact; every other angle is approximate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from equilens.errors import ModelError
from equilens.models._escnn_compat import enn, gspaces
from equilens.models.base import FeatureFields, LensModel
from equilens.models.registry import ModelEntry, add_entry
from equilens.models.sampled_relu import sample_moments, sampled_relu
from equilens.models.steerable import (
    DEFAULT_EQUIVARIANT_MODEL,
    ESCNN_TO_DISPLAY,
    HEAD_POOLS,
    LINEAR_POOL_MODES,
    SMOOTH_LAYOUT,
    ConvSpec,
    EscnnModule,
    FineGridNonlinearity,
    GaussianBlur,
    SymmetricPool2d,
    _conv_layer_indices,
    _layout_arg,
    layer_fields,
    r2conv,
    spatial_pool,
)


class FourierReLU(nn.Module):
    """ReLU on samples of band-limited functions on the group, one per field: (B, F * s, H, W) ->
    (B, F * s_out, H, W).

    Every field's s Fourier coefficients are turned into the function's values on a grid of group elements
    (``A``, (n, s)), rectified, and projected back onto s_out coefficients (``A_inv``, (s_out, n)); both
    matrices come from escnn's ``FourierPointwise`` (``module``), whose output this equals. The map runs
    per pixel over the channels-last layout (:func:`~equilens.models.sampled_relu.sampled_relu`, compiled
    on CPU) instead of escnn's einsum over (B, F, s, H, W), which spends most of its time copying on CPU.
    """

    A: torch.Tensor
    A_inv: torch.Tensor
    mean_row: torch.Tensor
    gram: torch.Tensor

    def __init__(self, module: Any, sample_norm: bool = False) -> None:
        super().__init__()
        self.in_size, self.out_size = module.rho.size, module.rho_out.size
        self.register_buffer("A", module.A.detach().clone().float(), persistent=False)
        self.register_buffer("A_inv", module.Ainv.detach().clone().float(), persistent=False)
        self.fields = len(module.in_type)
        self.norm = nn.BatchNorm1d(self.fields) if sample_norm else None
        a = self.A.double()
        # The sample batch norm is an affine map of every field's samples whose statistics come from the
        # coefficients: the samples' mean is coeff . mean_row and their mean square coeff^T gram coeff
        # (exact for any A), so the samples are never materialised for it; the scale and shift are applied
        # to the samples inside the compiled kernel of sampled_relu (the same function, a fine-grid ReLU
        # 2-3x faster forward and backward than the torch expression: measured, see that module).
        self.register_buffer("mean_row", a.mean(0).float(), persistent=False)
        self.register_buffer("gram", (a.t() @ a / a.shape[0]).float(), persistent=False)

    def _affine(self, coeff: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-field scale and shift of the sample batch norm (training: this batch's statistics, updating
        the running ones as ``nn.BatchNorm1d`` does; eval: the running ones)."""
        norm = self.norm
        assert norm is not None and norm.running_mean is not None and norm.running_var is not None
        if norm.training:
            first, second = sample_moments(coeff, self.mean_row, self.gram)
            mean = first / coeff.shape[0]
            var = (second / coeff.shape[0] - mean.square()).clamp_min(0.0)
            with torch.no_grad():
                n = coeff.shape[0] * self.A.shape[0]
                assert norm.num_batches_tracked is not None
                norm.num_batches_tracked.add_(1)
                factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
                norm.running_mean.lerp_(mean.detach(), factor)
                norm.running_var.lerp_(var.detach() * n / max(n - 1, 1), factor)
        else:
            mean, var = norm.running_mean, norm.running_var
        scale = norm.weight * torch.rsqrt(var + norm.eps)
        return scale, norm.bias - mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        coeff = x.permute(0, 2, 3, 1).reshape(b * h * w, self.fields, self.in_size)
        if self.norm is not None:
            # per field over images, pixels and group samples: with more samples than the field's band
            # needs, their mean and mean square are exact invariants (Parseval), as InnerBatchNorm's are
            scale, shift = self._affine(coeff)
        else:
            scale, shift = x.new_ones(self.fields), x.new_zeros(self.fields)
        out = sampled_relu(coeff, scale, shift, self.A, self.A_inv).reshape(b, h, w, self.fields * self.out_size)
        return out.permute(0, 3, 1, 2)


class FourierSteerableCNN(LensModel):
    """Steerable CNN with band-limited SO(2) / O(2) fields and the Fourier ReLU; invariant head.

    Each layer: ``R2Conv``, batch norm (of the samples, or ``IIDBatchNorm2d`` of the coefficients),
    Fourier ReLU (optionally on a 2x finer spatial grid), optional anti-aliased 2x downsampling. The last
    layer's Fourier ReLU returns only the frequency-0 coefficient of every field (the mean of the rectified
    samples over the group: an invariant), then the spatial mean.

    Input (B, in_channels, H, W); features (B, fields of the last layer).

    Args:
        kind: ``"c"`` -> SO(2), ``"d"`` -> O(2).
        max_frequency: L, the highest angular frequency of the fields.
        group_samples: rotations on which the ReLU is evaluated (a multiple of 4, > 2 L).
        layout, width, dropout, kernel_size, pool, frequency_cutoff, head_pool, fine_nonlinearity: as in
            :class:`~equilens.models.steerable.RegularSteerableCNN` (widths in channels for a group of 8
            elements, :func:`~equilens.models.steerable.layer_fields` with |G| = 16, as for D8).
        norm: ``"samples"`` (batch norm of the sampled values, see the module docstring) or ``"iid"``
            (escnn's ``IIDBatchNorm2d`` of the coefficients).
        input_blur: if > 0, a fixed :class:`~equilens.models.steerable.GaussianBlur` of this sigma (pixels)
            before the first layer.
    """

    def __init__(self, in_channels: int, num_outputs: int, kind: str, layout: Sequence[ConvSpec] = SMOOTH_LAYOUT,
                 width: float = 1.0, max_frequency: int = 3, group_samples: int = 16, dropout: float = 0.0,
                 kernel_size: int | None = None, pool: str = "blur5", frequency_cutoff: float | None = None,
                 head_pool: str = "mean", fine_nonlinearity: Sequence[int] = (), norm: str = "samples",
                 input_blur: float = 0.0) -> None:
        fine_layers = _conv_layer_indices(fine_nonlinearity, len(layout), "fine_nonlinearity")
        if max_frequency < 1:
            raise ModelError(f"max_frequency must be >= 1, got {max_frequency}")
        if group_samples % 4 or group_samples <= 2 * max_frequency:
            raise ModelError(f"group_samples must be a multiple of 4 above 2 * max_frequency = "
                             f"{2 * max_frequency}, got {group_samples}")
        if pool not in LINEAR_POOL_MODES:
            raise ModelError(f"pool must be one of {', '.join(LINEAR_POOL_MODES)} (linear: the fields are not "
                             f"permutation fields), got {pool!r}")
        if head_pool not in HEAD_POOLS:
            raise ModelError(f"head_pool must be one of {', '.join(HEAD_POOLS)}, got {head_pool!r}")
        if norm not in ("iid", "samples"):
            raise ModelError(f"norm must be 'iid' or 'samples', got {norm!r}")
        if kind == "c":
            gspace = gspaces.rot2dOnR2(N=-1, maximum_frequency=2 * max_frequency + 2)
        elif kind == "d":
            gspace = gspaces.flipRot2dOnR2(N=-1, maximum_frequency=2 * max_frequency + 2)
        else:
            raise ModelError(f"group kind must be 'c' (SO(2)) or 'd' (O(2)), got {kind!r}")
        group = gspace.fibergroup
        irreps = group.bl_irreps(max_frequency)
        rho = group.spectral_regular_representation(*irreps)
        fields = [layer_fields(width, spec.channels, 16) for spec in layout]  # as D8's 16-channel fields
        n_pools = sum(spec.pool for spec in layout)
        super().__init__(in_channels, num_outputs, num_features=fields[-1], min_input_size=2**n_pools,
                         dropout=dropout)
        self.gspace = gspace
        self.head_pool = head_pool
        self.in_type = enn.FieldType(gspace, [gspace.trivial_repr] * in_channels)
        grid: dict[str, Any] = {"type": "regular", "N": group_samples}
        layers: list[nn.Module] = [GaussianBlur(input_blur)] if input_blur else []
        block_ends: list[int] = []
        current = self.in_type
        for depth, (spec, n_fields) in enumerate(zip(layout, fields, strict=True), start=1):
            out_type = enn.FieldType(gspace, [rho] * n_fields)
            layers.append(r2conv(current, out_type, kernel_size or spec.kernel, frequency_cutoff=frequency_cutoff))
            if norm == "iid":
                layers.append(EscnnModule(enn.IIDBatchNorm2d(out_type)))
            last = depth == len(layout)
            act = FourierReLU(enn.FourierPointwise(gspace, n_fields, irreps, function="p_relu",
                                                   out_irreps=[group.trivial_representation.id] if last else None,
                                                   **grid), sample_norm=norm == "samples")
            layers.append(FineGridNonlinearity(act) if depth in fine_layers else act)
            if spec.pool:
                layers.append(SymmetricPool2d(pool))
            block_ends.append(len(layers))
            current = out_type
        self.body = nn.Sequential(*layers)
        self.group_name = "SO(2)" if kind == "c" else "O(2)"
        self.block_ends = tuple(block_ends)
        # the last layer keeps only frequency 0 (no vector part): its fields are the head's features
        self.feature_depths = len(layout) - 1
        self.coefficients = rho.size
        self.scalar_slot, vector_at = _frequency_slots(rho, kind)
        self.register_buffer("vector_slots", torch.tensor(vector_at, dtype=torch.long), persistent=False)
        self.register_buffer("to_display", torch.tensor(ESCNN_TO_DISPLAY), persistent=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_features): frequency 0 of every rectified field, mean over space."""
        return spatial_pool(self.body(x), self.head_pool)

    def feature_fields(self, x: torch.Tensor, depth: int) -> FeatureFields:
        """The band-limited fields after the first ``depth`` conv layers (each with its norm, Fourier ReLU
        and downsampling), read out as their frequency-0 and frequency-1 coefficients.

        The frequency-0 coefficient of a field is the mean of its function over the group (invariant); the
        frequency-1 coefficients (one pair for SO(2), the two copies of O(2)'s 2-d irrep for O(2)) turn with
        the input's rotation, expressed in the display frame (right, up), as for the regular nets.

        Args:
            x: (B, in_channels, H, W) images.
            depth: 1 .. ``len(layout) - 1`` (the last layer's fields are invariants only).

        Returns:
            scalar (B, fields, H', W') and vector (B, fields * copies, 2, H', W') fields.
        """
        self.check_input(x)
        self._check_depth(depth)
        features = self.body[: self.block_ends[depth - 1]](x)
        b, c, h, w = features.shape
        fields = features.view(b, c // self.coefficients, self.coefficients, h, w)
        vector = fields[:, :, self.vector_slots]  # (B, F, copies, 2, H', W') in escnn's (up, left) frame
        vector = torch.einsum("kj,bfcjhw->bfckhw", self.to_display.to(vector), vector)
        return FeatureFields(scalar=fields[:, :, self.scalar_slot], vector=vector.flatten(1, 2), equivariant=True,
                             description=f"frequency 0 and 1 of {fields.shape[1]} band-limited {self.group_name} "
                                         f"fields after {depth} conv layer(s)")


def _frequency_slots(rho: Any, kind: str) -> tuple[int, list[list[int]]]:
    """Where a field of the spectral regular representation ``rho`` (identity change of basis, checked)
    keeps its frequency-0 coefficient and its frequency-1 pairs: (index, [[i, i + 1], ...])."""
    import numpy as np

    if not np.allclose(rho.change_of_basis, np.eye(rho.size)):
        raise ModelError("the Fourier fields' representation is not in its irreps' basis; escnn changed?")
    trivial, rotation = ((0,), (1,)) if kind == "c" else ((0, 0), (1, 1))
    scalar_at, vector_at, offset = -1, [], 0
    for irrep_id in rho.irreps:
        size = rho.group.irrep(*irrep_id).size
        if tuple(irrep_id) == trivial:
            scalar_at = offset
        elif tuple(irrep_id) == rotation:
            vector_at.append([offset, offset + 1])
        offset += size
    return scalar_at, vector_at


#: Per group kind ("c": SO(2), "d": O(2)): the registered nets' default ``group_samples`` and
#: ``fine_nonlinearity``. SO(2), the default equivariant model: 32 samples and the 2x finer grid in every conv
#: layer, the configuration measured below a quarter of ResNet-18's off-grid change after training on every
#: seed, at 1.3x its training speed (README, "Default equivariant model"); O(2) keeps 16 samples (32 with the
#: reflections) and the fine grid in layers 3-4, the configuration its figures were measured with.
FOURIER_DEFAULTS: dict[str, tuple[int, tuple[int, ...]]] = {"c": (32, (1, 2, 3, 4, 5, 6, 7)), "d": (16, (3, 4))}


def _fourier_entry(kind: str) -> ModelEntry:
    group = "SO(2)" if kind == "c" else "O(2)"
    samples, fine = FOURIER_DEFAULTS[kind]

    def factory(in_channels: int = 1, num_outputs: int = 3, width: float = 1.0,
                layout: Sequence[ConvSpec | Sequence[Any]] | None = None, max_frequency: int = 3,
                group_samples: int = samples, dropout: float = 0.0, kernel_size: int | None = None,
                pool: str = "blur5", frequency_cutoff: float | None = None, head_pool: str = "mean",
                fine_nonlinearity: Sequence[int] = fine, norm: str = "samples",
                input_blur: float = 0.0) -> FourierSteerableCNN:
        return FourierSteerableCNN(in_channels, num_outputs, kind,
                                   SMOOTH_LAYOUT if layout is None else _layout_arg(layout), width,
                                   max_frequency, group_samples, dropout, kernel_size, pool, frequency_cutoff,
                                   head_pool, fine_nonlinearity, norm, input_blur)

    name = f"steerable_{'so2' if kind == 'c' else 'o2'}_fourier"
    default = " (default equivariant model)" if name == DEFAULT_EQUIVARIANT_MODEL else ""
    return ModelEntry(name=name, symmetry=group, family="steerable",
                      description=f"escnn steerable CNN, band-limited {group} fields (frequencies <= 3), "
                                  f"ReLU on {samples} sampled rotations, on a 2x finer grid in conv layers "
                                  f"{', '.join(map(str, fine))}, frequency-0 head{default}", factory=factory)


for _kind in ("c", "d"):
    add_entry(_fourier_entry(_kind))

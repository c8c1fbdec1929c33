"""Neural posterior estimation (``--task posterior``): a registry embedding and a conditional normalising flow.

The network (:class:`PosteriorNet`) is ``q(theta | x) = flow(theta | embedding(x))``: any registered model
(``create_model(name, num_outputs=E)``) maps an image to an E-dimensional context vector, and a
neural spline flow from the maintained ``zuko`` library (``zuko.flows.NSF``; chosen over ``sbi``, which
would also install on this torch but pulls nflows, skorch and tabulate, for a single light dependency)
models the D recorded parameters given that context. Training minimises ``-log q(theta | x)`` over the
training images (amortised NPE: the simulator's draws of theta are the prior).

**The parameter space of the flow.** Each parameter theta_d has a prior range [low_d, high_d] (recorded
in ``normalisation.json`` and in every checkpoint). The flow lives on

    z_d = (logit((theta_d - low_d) / (high_d - low_d)) - loc_d) / scale_d,

unbounded, standardised with the training values' mean ``loc_d`` and standard deviation ``scale_d``.
Samples mapped back through the inverse lie strictly inside the prior range (no mass outside the prior),
and densities in theta include the Jacobian ``|dz/dtheta|``.

**The prior range** (:func:`resolve_prior`): given explicitly (``prior: {name: [low, high]}`` in the config,
``--prior NAME=LOW,HIGH``), or the documented simulator range when the data set's manifest records one
(:data:`DOCUMENTED_PRIORS`: ``log10_m_a`` from ``axion_log10_mass_range``, drawn uniformly), or else the
range of the recorded finite values over the whole data set, widened by :data:`RECORDED_RANGE_PAD` of it at
each end. Every recorded value must lie inside it. The flow is trained on the simulator's draws, so the prior
*density* is that of the training values; the population combination (:mod:`equilens.evaluation.posterior`)
assumes it uniform inside the range, which holds for the documented ranges above.

**Rows.** Rows where a target is NaN (a class without that parameter) are dropped before the split, as
for ``regress``, so a one-parameter posterior run and a regression run of the same target with the same
split seed and fractions share their test set; an infinite value is an error.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from equilens.data.datamodule import LensDataModule, data_fingerprint, stratified_split
from equilens.errors import ConfigError, DataError, ModelError
from equilens.models import create_model
from equilens.training.module import LensModule

#: Parameter name -> simulator config key of its documented range (drawn uniformly inside it).
DOCUMENTED_PRIORS: dict[str, str] = {"log10_m_a": "axion_log10_mass_range"}
#: Options of the flow head and their defaults (``flow_kwargs`` in the config, ``--flow-arg KEY=VALUE``).
FLOW_DEFAULTS: dict[str, Any] = {"context_features": 32, "transforms": 3, "hidden_features": [64, 64], "bins": 8}
#: Fractions in (0, 1) are clipped to [EPS, 1 - EPS] before the logit (values at the prior edge).
EPS = 1e-6
#: A prior taken from the recorded values spans their range widened by this fraction of it at each end, so
#: that the extreme training values do not sit on the edge (where the logit diverges).
RECORDED_RANGE_PAD = 0.01


def parse_targets(target: str | Sequence[str] | None) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]``; raise :class:`ConfigError` if empty or repeated."""
    if target is None:
        names: list[str] = []
    elif isinstance(target, str):
        names = [t.strip() for t in target.split(",") if t.strip()]
    else:
        names = [str(t).strip() for t in target]
    if not names:
        raise ConfigError("task 'posterior' needs --target (one or more recorded parameters, comma-separated, "
                          "e.g. log10_m_a)")
    if len(set(names)) != len(names):
        raise ConfigError(f"--target names a parameter twice: {','.join(names)}")
    return names


def flow_options(flow_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The flow options with defaults filled in; unknown keys raise :class:`ConfigError` listing the valid ones."""
    given = dict(flow_kwargs or {})
    unknown = sorted(set(given) - set(FLOW_DEFAULTS))
    if unknown:
        raise ConfigError(f"unknown flow option(s) {', '.join(unknown)}; valid: {', '.join(FLOW_DEFAULTS)}")
    opts = {**FLOW_DEFAULTS, **given}
    for key in ("context_features", "transforms", "bins"):
        if not isinstance(opts[key], int) or opts[key] < 1:
            raise ConfigError(f"flow option {key} must be an integer >= 1, got {opts[key]!r}")
    hidden = opts["hidden_features"]
    if not isinstance(hidden, list | tuple) or not hidden or not all(isinstance(h, int) and h > 0 for h in hidden):
        raise ConfigError(f"flow option hidden_features must be a list of positive integers, got {hidden!r}")
    opts["hidden_features"] = [int(h) for h in hidden]
    return opts


def validate_posterior_config(cfg: Any) -> None:
    """Checks of a ``TrainConfig`` with ``task: posterior`` that need no data (called by ``validate``)."""
    parse_targets(cfg.target)
    if cfg.predict_variance:
        raise ConfigError("--predict-variance only applies to --task regress (a posterior run models the whole "
                          "distribution)")
    flow_options(cfg.flow_kwargs)
    if not isinstance(cfg.prior, dict):
        raise ConfigError(f"prior must be a mapping NAME: [LOW, HIGH], got {cfg.prior!r}")
    targets = parse_targets(cfg.target)
    for name, rng in cfg.prior.items():
        if name not in targets:
            raise ConfigError(f"prior given for {name!r}, which is not a target ({', '.join(targets)})")
        _check_range(name, rng)


def _check_range(name: str, rng: Any) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in rng)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"prior of {name!r} must be [LOW, HIGH], got {rng!r}") from exc
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"prior of {name!r} must be finite with LOW < HIGH, got [{low}, {high}]")
    return low, high


def resolve_prior(name: str, values: np.ndarray, manifest_config: Mapping[str, Any] | None,
                  given: Any = None) -> dict[str, Any]:
    """The prior range of one parameter (see module docstring) and where it came from.

    Args:
        name: parameter name.
        values: float64 [N] finite recorded values (all rows that will be used).
        manifest_config: the data set's simulator config (``manifest["config"]``), or None.
        given: an explicit [low, high], or None.

    Returns:
        ``{"low", "high", "source"}``.

    Raises:
        DataError: a recorded value lies outside the range.
    """
    if given is not None:
        low, high = _check_range(name, given)
        source = "given in the training config"
    elif manifest_config and DOCUMENTED_PRIORS.get(name) in manifest_config:
        key = DOCUMENTED_PRIORS[name]
        low, high = (float(v) for v in manifest_config[key])
        source = f"simulator config {key} (uniform)"
        if not low < high:  # a fixed value (min == max): fall back to the recorded range
            low, high = float(values.min()), float(values.max())
            source = "range of the recorded values"
    else:
        low, high = float(values.min()), float(values.max())
        pad = RECORDED_RANGE_PAD * (high - low)
        low, high = low - pad, high + pad
        source = f"range of the recorded values, widened by {RECORDED_RANGE_PAD:.0%} of it at each end"
    if not low < high:
        raise DataError(f"every recorded {name!r} equals {low}: a posterior needs a parameter that varies "
                        f"(or pass --prior {name}=LOW,HIGH)")
    outside = int(((values < low) | (values > high)).sum())
    if outside:
        raise DataError(f"the prior range of {name!r} [{low}, {high}] ({source}) excludes {outside} of "
                        f"{values.size} recorded values (recorded range [{values.min()}, {values.max()}]); "
                        f"choose a range that contains them")
    return {"low": low, "high": high, "source": source}


class PosteriorDataModule(LensDataModule):
    """A :class:`LensDataModule` whose targets are D recorded parameters, mapped into the flow's space.

    Items are ``(image float32 [C, H, W], z float32 [D])`` with z as in the module docstring. The split
    is drawn exactly as for ``regress`` (rows with a finite value of every target, stratified by class).

    Args:
        data_dir: the data set directory.
        targets: parameter names.
        prior: explicit ranges ``{name: [low, high]}`` (others resolved by :func:`resolve_prior`).
        **kwargs: as for :class:`LensDataModule` (not ``task`` / ``target``).
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, targets: Sequence[str],
                 prior: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self.targets = list(targets)
        self._prior_given = dict(prior or {})
        super().__init__(data_dir, task="regress", target=self.targets[0], **kwargs)
        self.task = "posterior"

    def _values(self) -> np.ndarray:
        cols = self.dataset.parameters(self.targets)
        return np.stack([cols[t] for t in self.targets], axis=1)

    def _make_split(self) -> dict[str, Any]:
        values = self._values()
        inf = np.isinf(values)
        if inf.any():
            rows = np.nonzero(inf.any(axis=1))[0]
            raise DataError(f"{int(rows.size)} image(s) record an infinite target (e.g. position {int(rows[0])}, "
                            f"{dict(zip(self.targets, values[rows[0]].tolist(), strict=True))}); a posterior "
                            f"needs finite values (NaN marks a class without the parameter and is dropped)")
        finite = np.isfinite(values).all(axis=1)
        dropped = int((~finite).sum())
        if dropped:
            self._log(f"dropping {dropped} of {finite.size} images without a finite {', '.join(self.targets)} "
                      f"(classes without that parameter)")
        candidates = self._leave_out_nonfinite(np.nonzero(finite)[0])
        assert candidates is not None
        if candidates.size == 0:
            raise DataError(f"no image of {self.data_dir} has a finite {', '.join(self.targets)}")
        parts = stratified_split(self.dataset.labels, self.class_names, val_fraction=self.val_fraction,
                                 test_fraction=self.test_fraction, seed=self.split_seed, candidates=candidates,
                                 limit_per_class=self.limit_per_class, require_all_classes=False)
        return {
            "data": str(self.data_dir.resolve()), "data_fingerprint": data_fingerprint(self.dataset),
            "n_images": len(self.dataset), "class_names": self.class_names, "split_seed": self.split_seed,
            "val_fraction": self.val_fraction, "test_fraction": self.test_fraction,
            "limit_per_class": self.limit_per_class, "task": "posterior", "target": ",".join(self.targets),
            **{k: v.tolist() for k, v in parts.items()},
        }

    def _make_stats(self) -> dict[str, Any]:
        stats = super()._make_stats()  # image statistics (and a first-target entry, replaced below)
        values = self._values()
        used = np.concatenate([self.positions(p) for p in ("train", "val", "test")])
        config = self.dataset.manifest.get("config") if hasattr(self.dataset, "manifest") else None
        priors = [resolve_prior(t, values[used, d], config, self._prior_given.get(t))
                  for d, t in enumerate(self.targets)]
        low = np.array([p["low"] for p in priors])
        high = np.array([p["high"] for p in priors])
        u = logit_fraction(values[self.positions("train")], low, high)
        scale = u.std(axis=0)
        stats["target"] = {
            "names": self.targets, "low": low.tolist(), "high": high.tolist(),
            "prior_source": [p["source"] for p in priors],
            "loc": u.mean(axis=0).tolist(), "scale": np.where(scale > 0, scale, 1.0).tolist(),
        }
        return stats

    def targets_raw(self, positions: np.ndarray) -> np.ndarray:
        """float64 [n, D] recorded values of the targets."""
        return self._values()[np.asarray(positions, dtype=np.int64)]

    def subset(self, positions: np.ndarray) -> Any:
        from equilens.data.datamodule import LensSubset

        positions = np.asarray(positions, dtype=np.int64)
        t = self.stats["target"]
        z = (logit_fraction(self.targets_raw(positions), np.asarray(t["low"]), np.asarray(t["high"]))
             - np.asarray(t["loc"])) / np.asarray(t["scale"])
        return LensSubset(self.dataset, positions, z.astype(np.float32), self.normalizer)


def logit_fraction(theta: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """logit of the position of ``theta`` (..., D) inside [low, high] (D,), clipped to [EPS, 1 - EPS]."""
    f = np.clip((theta - low) / (high - low), EPS, 1.0 - EPS)
    return np.log(f) - np.log1p(-f)


class PosteriorNet(nn.Module):
    """``q(theta | x)``: registry embedding + zuko neural spline flow on the bounded, standardised z.

    Args:
        model_name, model_kwargs: the embedding network (``create_model(model_name, num_outputs=E)``).
        low, high: prior range per parameter (D,), in the parameters' own units.
        loc, scale: mean and std of the training values' logit fractions (D,).
        flow_kwargs: :data:`FLOW_DEFAULTS` keys.
    """

    low: torch.Tensor
    high: torch.Tensor
    loc: torch.Tensor
    scale: torch.Tensor

    def __init__(self, model_name: str, model_kwargs: Mapping[str, Any] | None, low: Sequence[float],
                 high: Sequence[float], loc: Sequence[float], scale: Sequence[float],
                 flow_kwargs: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        import zuko

        opts = flow_options(flow_kwargs)
        self.dim = len(low)
        self.embedding = create_model(model_name, in_channels=1, num_outputs=opts["context_features"],
                                      **dict(model_kwargs or {}))
        self.flow = zuko.flows.NSF(features=self.dim, context=opts["context_features"], bins=opts["bins"],
                                   transforms=opts["transforms"], hidden_features=opts["hidden_features"])
        for name, v in (("low", low), ("high", high), ("loc", loc), ("scale", scale)):
            t = torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=torch.float32)
            if t.shape != (self.dim,):
                raise ModelError(f"{name} must have one value per parameter ({self.dim}), got {list(v)}")
            self.register_buffer(name, t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 1, H, W) -> context (B, E)."""
        return self.embedding(x)

    def log_prob_z(self, z: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """log q(z | context) for z (..., B, D) and context (B, E) -> (..., B)."""
        return self.flow(context).log_prob(z)

    def theta_to_z(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """theta (..., D) -> z (..., D) and log|dz/dtheta| summed over D (...)."""
        f = ((theta - self.low) / (self.high - self.low)).clamp(EPS, 1 - EPS)
        u = torch.log(f) - torch.log1p(-f)
        z = (u - self.loc) / self.scale
        logdet = (-torch.log(self.scale) - torch.log(self.high - self.low) - torch.log(f) - torch.log1p(-f)).sum(-1)
        return z, logdet

    def z_to_theta(self, z: torch.Tensor) -> torch.Tensor:
        """z (..., D) -> theta (..., D), strictly inside the prior range."""
        return self.low + (self.high - self.low) * torch.sigmoid(z * self.scale + self.loc)

    def log_prob(self, theta: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """log q(theta | x) in the parameters' own units: theta (..., B, D), context (B, E) -> (..., B).
        Values outside the closed prior range get -inf."""
        z, logdet = self.theta_to_z(theta)
        lp = self.log_prob_z(z, context) + logdet
        inside = ((theta >= self.low) & (theta <= self.high)).all(-1)
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    def sample(self, context: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` draws per context: theta (n, B, D) and their log q(theta | x) (n, B). Uses torch's global
        RNG (seed it, e.g. inside ``torch.random.fork_rng``)."""
        z, lp = self.flow(context).rsample_and_log_prob((n,))
        theta = self.z_to_theta(z)
        _, logdet = self.theta_to_z(theta)
        return theta, lp + logdet


class PosteriorModule(LensModule):
    """LensModule for ``task: posterior``: same training step, NaN stop, optimiser and weights_only checkpoints;
    the loss is the flow's negative log-likelihood of the standardised z (B, D) given the image context."""

    def __init__(self, model_name: str, model_kwargs: dict[str, Any] | None, target_stats: Mapping[str, Any],
                 flow_kwargs: Mapping[str, Any] | None = None, lr: float = 1e-3, weight_decay: float = 1e-4,
                 max_epochs: int = 10, seed: int = 0, meta: dict[str, Any] | None = None) -> None:
        super(LensModule, self).__init__()  # LightningModule's init: the network is built here, not by LensModule
        self.task = "posterior"
        self.predict_variance = False
        self.lr, self.weight_decay, self.max_epochs, self.seed = lr, weight_decay, max_epochs, seed
        self.model = PosteriorNet(  # type: ignore[assignment]  # LensModule's attribute holds the whole network
            model_name, model_kwargs, target_stats["low"], target_stats["high"], target_stats["loc"],
            target_stats["scale"], flow_kwargs)
        self._state_keys = {f"model.{k}" for k in self.model.state_dict()}
        self.meta = dict(meta or {})
        self.meta.update(model=model_name, model_kwargs=dict(model_kwargs or {}), task="posterior",
                         num_classes=0, predict_variance=False, flow_kwargs=flow_options(flow_kwargs),
                         target_stats=dict(target_stats))

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        net = cast(PosteriorNet, self.model)
        if target.ndim != 2 or target.shape[1] != net.dim or out.shape[0] != target.shape[0]:
            raise ModelError(f"posterior loss needs context (B, E) and targets (B, {net.dim}), got "
                             f"{tuple(out.shape)} and {tuple(target.shape)}")
        return -net.log_prob_z(target, out).mean()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, target = batch
        loss = self.loss(self(images), target)
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=images.shape[0])


def build_posterior_datamodule(cfg: Any, split: dict[str, Any] | None = None, stats: dict[str, Any] | None = None,
                               log: Callable[[str], None] = print, data_dir: str | None = None) -> PosteriorDataModule:
    """The :class:`PosteriorDataModule` of a ``task: posterior`` config."""
    return PosteriorDataModule(
        data_dir or cfg.data, targets=parse_targets(cfg.target), prior=cfg.prior, batch_size=cfg.batch_size,
        num_workers=cfg.num_workers, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
        split_seed=cfg.split_seed, seed=cfg.seed, normalisation=cfg.normalisation, augmentation=cfg.augmentation,
        limit_per_class=cfg.limit_per_class, skip_nonfinite=cfg.skip_nonfinite, split=split, stats=stats, log=log)


def build_posterior_module(cfg: Any, dm: LensDataModule, meta: dict[str, Any]) -> PosteriorModule:
    """The :class:`PosteriorModule` of a config (``meta``: the run description stored in checkpoints)."""
    return PosteriorModule(cfg.model, cfg.model_kwargs, dm.stats["target"], cfg.flow_kwargs, lr=cfg.lr,
                           weight_decay=cfg.weight_decay, max_epochs=cfg.epochs, seed=cfg.seed, meta=meta)


def load_posterior(run_dir: str | os.PathLike[str], checkpoint: str = "best") -> tuple[PosteriorNet, dict[str, Any]]:
    """The trained :class:`PosteriorNet` of a posterior run, in eval mode, and the checkpoint's run description
    with Lightning's ``"epoch"`` and ``"global_step"`` and the ``"checkpoint"`` path (read by
    :func:`equilens.models.read_checkpoint`, ``torch.load(weights_only=True)``)."""
    from equilens.models import load_weights, read_checkpoint
    from equilens.training.config import read_run_config
    from equilens.training.fit import checkpoint_path

    cfg = read_run_config(run_dir)
    if cfg.task != "posterior":
        raise ConfigError(f"{run_dir} is a {cfg.task!r} run; this needs a run made with --task posterior")
    ckpt = checkpoint_path(run_dir, checkpoint)
    state, meta = read_checkpoint(ckpt)
    if meta.get("task") != "posterior" or "target_stats" not in meta:
        raise ModelError(f"{ckpt} is not an equilens posterior checkpoint")
    t = meta["target_stats"]
    net = PosteriorNet(meta["model"], meta["model_kwargs"], t["low"], t["high"], t["loc"], t["scale"],
                       meta["flow_kwargs"])
    load_weights(net, state, source=f"checkpoint {ckpt}", hint="it is not this run's posterior network")
    net.eval()
    return net, {**meta, "checkpoint": str(Path(ckpt))}

"""CPU numerics settings shared by training, evaluation and the benchmarks."""

from __future__ import annotations

import os

#: Environment variable: "0" runs the numpy / torch reference instead of the compiled (numba) kernels of the
#: renderer (:mod:`equilens.simulation.kernels`) and of the Fourier ReLU (:mod:`equilens.models.sampled_relu`).
JIT_ENV = "EQUILENS_JIT"


def jit_enabled() -> bool:
    """True unless the environment variable ``EQUILENS_JIT`` is "0" (then the references run)."""
    return os.environ.get(JIT_ENV, "1") != "0"


def flush_denormals() -> bool:
    """Make the CPU treat denormal (subnormal) floats as zero; returns whether the CPU supports it.

    Training ResNet-18 from scratch on 150 px single-channel lens images produces subnormal values in
    the backward pass; x86 CPUs handle those in microcode, and on this project's 2-core machine a
    training step ran at 7 img/s instead of 30 img/s (measured 2026-11-26, batch 32, torch 2.13.0).
    Flushing them to zero changes results only below float32's normal range (~1e-38).
    """
    import torch  # here, not at the top: the renderer imports this module for its JIT switch without torch

    return bool(torch.set_flush_denormal(True))

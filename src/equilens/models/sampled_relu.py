"""The Fourier ReLU's inner map as compiled (numba) kernels: sample, batch-norm, rectify, project back.

For every pixel and field, :class:`~equilens.models.fourier.FourierReLU` turns s Fourier coefficients c into
n samples of the function on the group (``A @ c``, A of shape (n, s)), applies the sample batch norm's
per-field scale and shift, rectifies, and projects back (``A_inv @ relu(.)``, A_inv of shape (s_out, n)).
Written as torch operations this is two thin matrix products around a (pixels, fields, n) tensor that goes
through memory several times forward and backward: on the 2x finer grid of the first layers (1.4 M
field-pixels of 32 samples per batch of 16 at 150 px) that traffic, not the arithmetic, was most of a
training step. Here each field-pixel's n samples live in a small scratch array: forward reads c and writes
the output; backward recomputes the samples from c (nothing of size n is stored) and returns the gradients
of c, of the scale and of the shift. :func:`sample_moments` gives the batch norm's statistics of the samples
from the coefficients in one pass. Both are the same functions as their torch expressions
(:func:`sampled_relu_torch`, :func:`sample_moments_torch`) to float rounding (tested: values, gradients,
``gradcheck`` in float64, a whole net's outputs and gradients).

Used on CPU tensors of float32 / float64 when :func:`~equilens.cpu.jit_enabled` (the
environment variable ``EQUILENS_JIT`` is not "0"); any other device or dtype takes the torch expression.
The kernels release the GIL and run on ``torch.get_num_threads()`` Python threads, each over a contiguous
range of fixed blocks of pixels, so the per-field sums do not depend on the thread count (tested bitwise).
Measured on this 2-core machine (``benchmarks/bench_models.py``, 150 px, batch 32, each against ResNet-18 in
the same rounds): the SO(2) Fourier net with 32 samples and the fine grid in conv layers 1-4 trained at 0.68x
ResNet-18's speed with the torch expressions and at 1.53x with these kernels.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from typing import Any

import numba
import numpy as np
import torch

from equilens.cpu import jit_enabled

__all__ = ["sample_moments", "sample_moments_torch", "sampled_relu", "sampled_relu_torch"]

#: Field-pixels per work item (and per partial sum of the per-field gradients and moments).
BLOCK = 256

#: Work items a thread gets at least (fewer blocks run on fewer threads).
MIN_BLOCKS_PER_THREAD = 16


@functools.cache
def _kernels(s: int, n: int, s_out: int) -> tuple[Any, Any]:
    """The forward and backward kernels for s coefficients, n samples and s_out output coefficients.

    The sizes are compile-time constants of the kernels (numba treats the closure's integers as such), so
    the inner loops over samples are unrolled and vectorised with the n samples in registers: 2.2-2.8x
    faster than the same loops over run-time sizes (measured, 32 samples of 7 coefficients). Compiled
    on first use per size and kept in numba's on-disk cache (keyed by the constants too)."""

    @numba.njit(nogil=True, fastmath=True, cache=True)
    def forward(lo: int, hi: int, c: np.ndarray, a_t: np.ndarray, a_inv: np.ndarray, scale: np.ndarray,
                shift: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
        # out[p, f] = a_inv @ relu(scale[f] * (a_t.T @ c[p, f]) + shift[f]); c (P, F, s), a_t (s, n),
        # a_inv (s_out, n), out (P, F, s_out)
        n_pix, n_fields, _ = c.shape
        zero = a_t[0, 0] - a_t[0, 0]  # 0 in the arrays' dtype: float64 literals would stop the vectorising
        for blk in range(lo, hi):
            v = np.empty(n, c.dtype)
            for p in range(blk * BLOCK, min(n_pix, (blk + 1) * BLOCK)):
                for f in range(n_fields):
                    c0 = c[p, f, 0]
                    for k in range(n):
                        v[k] = c0 * a_t[0, k]
                    for j in range(1, s):
                        cj = c[p, f, j]
                        for k in range(n):
                            v[k] += cj * a_t[j, k]
                    sc = scale[f]
                    sh = shift[f]
                    for k in range(n):
                        v[k] = max(v[k] * sc + sh, zero)
                    for i in range(s_out):
                        acc = zero
                        for k in range(n):
                            acc += a_inv[i, k] * v[k]
                        out[p, f, i] = acc

    @numba.njit(nogil=True, fastmath=True, cache=True)
    def backward(lo: int, hi: int, c: np.ndarray, a_t: np.ndarray, a_inv: np.ndarray, scale: np.ndarray,
                 shift: np.ndarray, grad: np.ndarray, grad_c: np.ndarray, grad_scale: np.ndarray,
                 grad_shift: np.ndarray) -> None:  # pragma: no cover - compiled
        # given grad (P, F, s_out): grad_c (P, F, s) and, per block of pixels, the partial sums grad_scale
        # and grad_shift (blocks, F); the samples are recomputed from c
        n_pix, n_fields, _ = c.shape
        zero = a_t[0, 0] - a_t[0, 0]
        for blk in range(lo, hi):
            raw = np.empty(n, c.dtype)
            g = np.empty(n, c.dtype)
            for p in range(blk * BLOCK, min(n_pix, (blk + 1) * BLOCK)):
                for f in range(n_fields):
                    c0 = c[p, f, 0]
                    g0 = grad[p, f, 0]
                    for k in range(n):
                        raw[k] = c0 * a_t[0, k]
                        g[k] = g0 * a_inv[0, k]
                    for j in range(1, s):
                        cj = c[p, f, j]
                        for k in range(n):
                            raw[k] += cj * a_t[j, k]
                    for i in range(1, s_out):
                        gi = grad[p, f, i]
                        for k in range(n):
                            g[k] += gi * a_inv[i, k]
                    sc = scale[f]
                    sh = shift[f]
                    d_scale = zero
                    d_shift = zero
                    for k in range(n):
                        gk = g[k] if raw[k] * sc + sh > zero else zero
                        g[k] = gk
                        d_scale += gk * raw[k]
                        d_shift += gk
                    grad_scale[blk, f] += d_scale
                    grad_shift[blk, f] += d_shift
                    for j in range(s):
                        acc = zero
                        for k in range(n):
                            acc += a_t[j, k] * g[k]
                        grad_c[p, f, j] = acc * sc

    return forward, backward


@functools.cache
def _moment_kernels(s: int) -> tuple[Any, Any]:
    """Kernels of :func:`sample_moments` for s coefficients (a compile-time constant, as in :func:`_kernels`)."""

    @numba.njit(nogil=True, fastmath=True, cache=True)
    def forward(lo: int, hi: int, c: np.ndarray, mean_row: np.ndarray, gram: np.ndarray, first: np.ndarray,
                second: np.ndarray) -> None:  # pragma: no cover - compiled
        # per block of pixels and field: sum over pixels of c . mean_row and of c^T gram c
        n_pix, n_fields, _ = c.shape
        zero = gram[0, 0] - gram[0, 0]
        for blk in range(lo, hi):
            for p in range(blk * BLOCK, min(n_pix, (blk + 1) * BLOCK)):
                for f in range(n_fields):
                    m1 = zero
                    m2 = zero
                    for i in range(s):
                        ci = c[p, f, i]
                        m1 += ci * mean_row[i]
                        row = zero
                        for j in range(s):
                            row += gram[i, j] * c[p, f, j]
                        m2 += ci * row
                    first[blk, f] += m1
                    second[blk, f] += m2

    @numba.njit(nogil=True, fastmath=True, cache=True)
    def backward(lo: int, hi: int, c: np.ndarray, mean_row: np.ndarray, gram: np.ndarray, g_first: np.ndarray,
                 g_second: np.ndarray, grad_c: np.ndarray) -> None:  # pragma: no cover - compiled
        # grad_c[p, f] = g_first[f] mean_row + 2 g_second[f] gram c[p, f] (gram is symmetric)
        n_pix, n_fields, _ = c.shape
        zero = gram[0, 0] - gram[0, 0]
        for blk in range(lo, hi):
            for p in range(blk * BLOCK, min(n_pix, (blk + 1) * BLOCK)):
                for f in range(n_fields):
                    g1 = g_first[f]
                    g2 = g_second[f] + g_second[f]
                    for i in range(s):
                        row = zero
                        for j in range(s):
                            row += gram[i, j] * c[p, f, j]
                        grad_c[p, f, i] = g1 * mean_row[i] + g2 * row

    return forward, backward


_POOL: dict[int, concurrent.futures.ThreadPoolExecutor] = {}  # by worker count
os.register_at_fork(after_in_child=_POOL.clear)  # a forked child has none of the parent's pool threads


def _run(kernel: Any, n_pix: int, *arrays: Any) -> None:
    """Run ``kernel(lo, hi, *arrays)`` over the blocks of ``n_pix`` field-pixels on
    ``torch.get_num_threads()`` threads, the calling one and pool workers (contiguous ranges of blocks, one
    per thread).

    The kernels release the GIL; Python threads wait on a lock when idle, where a second OpenMP runtime
    (numba's ``parallel=True``) kept spinning after each kernel and slowed the torch operations around it
    (ResNet-18's training step in the same process fell from 9.1 to 6.5 img/s, measured)."""
    blocks = (n_pix + BLOCK - 1) // BLOCK
    # small inputs stay on the calling thread: waking a worker costs more than their work
    threads = max(1, min(torch.get_num_threads(), blocks // MIN_BLOCKS_PER_THREAD))
    if threads == 1:
        kernel(0, blocks, *arrays)
        return
    workers = threads - 1  # the calling thread takes the last range itself
    if workers not in _POOL:
        _POOL[workers] = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="equilens-kernels")
    bounds = [blocks * i // threads for i in range(threads + 1)]
    futures = [_POOL[workers].submit(kernel, bounds[i], bounds[i + 1], *arrays) for i in range(workers)]
    kernel(bounds[workers], blocks, *arrays)
    for future in futures:
        future.result()


class _SampledReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, c: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, a: torch.Tensor,
                a_inv: torch.Tensor) -> torch.Tensor:
        c = c.detach().contiguous()
        scale, shift = scale.detach().contiguous(), shift.detach().contiguous()
        a_t = a.detach().t().contiguous()
        a_inv = a_inv.detach().contiguous()
        out = c.new_empty(c.shape[0], c.shape[1], a_inv.shape[0])
        kernel, _ = _kernels(c.shape[2], a_t.shape[1], a_inv.shape[0])
        _run(kernel, c.shape[0], c.numpy(), a_t.numpy(), a_inv.numpy(), scale.numpy(), shift.numpy(), out.numpy())
        ctx.save_for_backward(c, scale, shift, a_t, a_inv)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        c, scale, shift, a_t, a_inv = ctx.saved_tensors
        grad = grad.contiguous()
        grad_c = torch.empty_like(c)
        blocks = (c.shape[0] + BLOCK - 1) // BLOCK
        grad_scale = c.new_zeros(blocks, c.shape[1])
        grad_shift = c.new_zeros(blocks, c.shape[1])
        _, kernel = _kernels(c.shape[2], a_t.shape[1], a_inv.shape[0])
        _run(kernel, c.shape[0], c.numpy(), a_t.numpy(), a_inv.numpy(), scale.numpy(), shift.numpy(),
             grad.numpy(), grad_c.numpy(), grad_scale.numpy(), grad_shift.numpy())
        return grad_c, grad_scale.sum(0), grad_shift.sum(0), None, None


class _SampleMoments(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, c: torch.Tensor, mean_row: torch.Tensor,
                gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = c.detach().contiguous()
        mean_row, gram = mean_row.detach().contiguous(), gram.detach().contiguous()
        blocks = (c.shape[0] + BLOCK - 1) // BLOCK
        first = c.new_zeros(blocks, c.shape[1])
        second = c.new_zeros(blocks, c.shape[1])
        kernel, _ = _moment_kernels(c.shape[2])
        _run(kernel, c.shape[0], c.numpy(), mean_row.numpy(), gram.numpy(), first.numpy(), second.numpy())
        ctx.save_for_backward(c, mean_row, gram)
        return first.sum(0), second.sum(0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_first: torch.Tensor, g_second: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        c, mean_row, gram = ctx.saved_tensors
        grad_c = torch.empty_like(c)
        _, kernel = _moment_kernels(c.shape[2])
        _run(kernel, c.shape[0], c.numpy(), mean_row.numpy(), gram.numpy(), g_first.contiguous().numpy(),
             g_second.contiguous().numpy(), grad_c.numpy())
        return grad_c, None, None


def _compiled(*tensors: torch.Tensor) -> bool:
    """True when the compiled kernels take these tensors: JIT enabled, CPU, one float dtype."""
    dtype = tensors[0].dtype
    return (jit_enabled() and dtype in (torch.float32, torch.float64)
            and all(t.device.type == "cpu" and t.dtype == dtype for t in tensors))


def sample_moments_torch(c: torch.Tensor, mean_row: torch.Tensor,
                         gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference expression of :func:`sample_moments`."""
    first = (c @ mean_row).sum(0)
    second = ((c @ gram) * c).sum((0, 2))
    return first, second


def sample_moments(c: torch.Tensor, mean_row: torch.Tensor,
                   gram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per field, the sums over pixels of the samples' mean and mean square, from the coefficients.

    With ``mean_row = A.mean(0)`` and ``gram = A.T @ A / n`` (A the (n, s) sampling matrix), ``c . mean_row``
    is the mean of a field-pixel's n samples and ``c^T gram c`` their mean square (exact for any A), so the
    batch statistics of the samples need no pass over the samples themselves.

    Args:
        c: coefficients, (P, F, s).
        mean_row: (s,).
        gram: (s, s), symmetric.

    Returns:
        (sum over p of c[p, f] . mean_row, sum over p of c[p, f]^T gram c[p, f]), each (F,);
        differentiable in c.
    """
    if not _compiled(c, mean_row, gram):
        return sample_moments_torch(c, mean_row, gram)
    first, second = _SampleMoments.apply(c, mean_row, gram)
    return first, second


def sampled_relu_torch(c: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, a: torch.Tensor,
                       a_inv: torch.Tensor) -> torch.Tensor:
    """The reference expression: ``relu((c @ a.T) * scale[:, None] + shift[:, None]) @ a_inv.T``.

    Args:
        c: coefficients, (P, F, s).
        scale, shift: per field, (F,).
        a: sampling matrix, (n, s).
        a_inv: projection back onto s_out coefficients, (s_out, n).

    Returns:
        (P, F, s_out).
    """
    return torch.relu((c @ a.t()) * scale[:, None] + shift[:, None]) @ a_inv.t()


def sampled_relu(c: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, a: torch.Tensor,
                 a_inv: torch.Tensor) -> torch.Tensor:
    """:func:`sampled_relu_torch`, computed by the compiled kernels when the tensors are on the CPU in
    float32 / float64 and the JIT is enabled (shapes as there; differentiable in c, scale and shift, not in
    the matrices, which are fixed buffers of the model)."""
    if not _compiled(c, scale, shift, a, a_inv):
        return sampled_relu_torch(c, scale, shift, a, a_inv)
    return _SampledReLU.apply(c, scale, shift, a, a_inv)

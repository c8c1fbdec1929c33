"""The compiled Fourier-ReLU kernels against their torch expressions: values, gradients, thread counts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from equilens.cpu import JIT_ENV
from equilens.models import create_model
from equilens.models.sampled_relu import (
    BLOCK,
    MIN_BLOCKS_PER_THREAD,
    sample_moments,
    sample_moments_torch,
    sampled_relu,
    sampled_relu_torch,
)


def _inputs(pixels: int, fields: int, s: int, n: int, s_out: int, dtype: torch.dtype = torch.float32,
            seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    c = torch.randn(pixels, fields, s, generator=gen, dtype=dtype, requires_grad=True)
    scale = (torch.rand(fields, generator=gen, dtype=dtype) + 0.5).requires_grad_()
    shift = torch.randn(fields, generator=gen, dtype=dtype).requires_grad_()
    a = torch.randn(n, s, generator=gen, dtype=dtype)
    a_inv = torch.randn(s_out, n, generator=gen, dtype=dtype) / n
    return c, scale, shift, a, a_inv


@pytest.mark.parametrize(("pixels", "fields", "s", "n", "s_out"),
                         [(3 * BLOCK + 17, 3, 7, 32, 7), (BLOCK - 5, 1, 7, 16, 1), (700, 2, 14, 64, 14)])
def test_sampled_relu_matches_torch(pixels: int, fields: int, s: int, n: int, s_out: int) -> None:
    c, scale, shift, a, a_inv = _inputs(pixels, fields, s, n, s_out)
    grad = torch.randn(pixels, fields, s_out, generator=torch.Generator().manual_seed(1))
    results = []
    for fn in (sampled_relu, sampled_relu_torch):
        out = fn(c, scale, shift, a, a_inv)
        grads = torch.autograd.grad(out, (c, scale, shift), grad)
        results.append((out, *grads))
    for fast, ref in zip(*results, strict=True):
        assert fast.shape == ref.shape
        assert torch.allclose(fast, ref, rtol=1e-4, atol=1e-4 * float(ref.detach().abs().max()))
    # the ReLU does something here: some samples are cut, not all
    values = (c @ a.t()) * scale[:, None] + shift[:, None]
    assert 0.1 < float((values > 0).float().mean()) < 0.9


def test_sampled_relu_gradcheck_float64() -> None:
    c, scale, shift, a, a_inv = _inputs(BLOCK + 9, 2, 5, 12, 5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda c_, sc, sh: sampled_relu(c_, sc, sh, a, a_inv), (c, scale, shift))


def test_sample_moments_match_torch_and_gradcheck() -> None:
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(32, 7, generator=gen, dtype=torch.float64)
    mean_row, gram = a.mean(0), a.t() @ a / a.shape[0]
    c = torch.randn(2 * BLOCK + 3, 3, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    first, second = sample_moments(c, mean_row, gram)
    ref_first, ref_second = sample_moments_torch(c, mean_row, gram)
    assert torch.allclose(first, ref_first) and torch.allclose(second, ref_second)
    # the definition: sums over pixels of the samples' mean and mean square
    samples = c @ a.t()
    assert torch.allclose(first, samples.mean(-1).sum(0)) and torch.allclose(second, samples.square().mean(-1).sum(0))
    small = c[:40].detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: sample_moments(x, mean_row, gram), (small,))


def test_kernels_do_not_depend_on_the_thread_count() -> None:
    c, scale, shift, a, a_inv = _inputs(3 * MIN_BLOCKS_PER_THREAD * BLOCK + 1, 2, 7, 32, 7)  # 3 threads' work
    threads = torch.get_num_threads()
    runs = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            out = sampled_relu(c, scale, shift, a, a_inv)
            runs.append((out, *torch.autograd.grad(out.square().sum(), (c, scale, shift))))
    finally:
        torch.set_num_threads(threads)
    for other in runs[1:]:
        for x, y in zip(runs[0], other, strict=True):
            assert torch.equal(x, y)


def test_jit_off_takes_the_torch_expression(monkeypatch: pytest.MonkeyPatch) -> None:
    c, scale, shift, a, a_inv = _inputs(100, 2, 7, 16, 7)
    monkeypatch.setenv(JIT_ENV, "0")
    assert torch.equal(sampled_relu(c, scale, shift, a, a_inv), sampled_relu_torch(c, scale, shift, a, a_inv))


_FORK_SCRIPT = """
import multiprocessing, sys
import torch
from equilens.models.sampled_relu import BLOCK, MIN_BLOCKS_PER_THREAD, sampled_relu

def run():
    gen = torch.Generator().manual_seed(0)
    c = torch.randn(2 * MIN_BLOCKS_PER_THREAD * BLOCK, 2, 7, generator=gen)
    a, a_inv = torch.randn(32, 7, generator=gen), torch.randn(7, 32, generator=gen) / 32
    out = sampled_relu(c, torch.ones(2), torch.zeros(2), a, a_inv)
    # the checksum in numpy: torch's own reductions would enter GNU OpenMP, which a forked child cannot use
    # after the parent did (a libgomp limit, not this module's)
    return float(out.numpy().astype("float64").sum())

def child(queue):
    torch.set_num_threads(2)
    queue.put(run())

if __name__ == "__main__":
    torch.set_num_threads(2)
    expected = run()  # the parent's pool of kernel threads now exists
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=child, args=(queue,))
    proc.start()
    proc.join(timeout=100)
    if proc.is_alive():
        proc.kill()
        sys.exit("the forked child hung in the kernels' thread pool")
    got = queue.get(timeout=5)
    assert abs(got - expected) <= 1e-6 * abs(expected), (got, expected)
    print("ok")
"""


def test_forked_child_runs_the_kernels(tmp_path: Path) -> None:
    """The parent's thread pool does not exist in a forked child; the child makes its own (no hang). Run in
    a fresh interpreter: a fork from the test process would inherit whatever locks other tests' threads
    (logging, data loaders, dask) hold at that moment."""
    script = tmp_path / "fork_kernels.py"
    script.write_text(_FORK_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_fourier_net_same_with_jit_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default equivariant net trains through the kernels: its outputs and gradients in training mode
    equal those of the torch expressions (``EQUILENS_JIT=0``) to float rounding."""
    torch.manual_seed(0)
    model = create_model("steerable_so2_fourier", group_samples=16, fine_nonlinearity=[2]).train()
    x = torch.randn(2, 1, 24, 24, generator=torch.Generator().manual_seed(3))
    runs = []
    for jit in ("1", "0"):
        monkeypatch.setenv(JIT_ENV, jit)
        model.zero_grad()
        out = model(x)
        out.square().sum().backward()
        runs.append((out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(runs[0][0], runs[1][0], rtol=1e-4, atol=1e-5)
    assert len(runs[0][1]) == len(runs[1][1]) > 0
    largest = max(float(g.abs().max()) for g in runs[1][1])  # some gradients cancel to rounding (a bias
    for g_fast, g_ref in zip(runs[0][1], runs[1][1], strict=True):  # before a batch norm): absolute scale
        assert torch.allclose(g_fast, g_ref, rtol=1e-3, atol=1e-4 * largest)

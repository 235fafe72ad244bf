"""The engine's CPU matmul kernel computes x @ w.T for any shape, row by row the same in any batch."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch.nn.functional as F

from echotune_mcp.config import _env_bool
from echotune_mcp.engine import cpu_gemm
from echotune_mcp.engine.device import cpu_flags
from echotune_mcp.engine.musicgen_runner import Linear, MusicgenRunner
from echotune_mcp.engine.musicgen_shapes import build_random_musicgen

LIB = cpu_gemm.load()


def _why_no_kernel_here() -> str | None:
    """Why the kernel cannot be tested on this machine at all, or None when it must work here.

    Only a CPU without AVX-512, or no C compiler outside CI, excuses it (and a user who switched it off,
    outside CI). With a compiler and AVX-512, a kernel that fails to build or load fails these tests.
    """
    if "avx512f" not in cpu_flags():
        return "the CPU has no AVX-512"
    if os.environ.get("CI"):
        return None
    if cpu_gemm.compiler() is None:
        return "no C compiler on PATH: install one (`apt-get install gcc`) to build the kernel"
    if not _env_bool("CPU_GEMM", True):
        return "ECHOTUNE_CPU_GEMM is off"
    return None


WHY_NOT = _why_no_kernel_here()


@pytest.fixture
def kernel():
    if WHY_NOT:
        pytest.skip(f"engine CPU kernel not usable here: {WHY_NOT}")
    assert LIB is not None, f"the engine CPU kernel failed on a machine that can run it: {cpu_gemm.unavailable_reason()}"
    return LIB


needs_kernel = pytest.mark.usefixtures("kernel")
STORAGE = [torch.float32, torch.bfloat16]


@needs_kernel
@pytest.mark.parametrize("storage", STORAGE)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (2, 17, 5), (8, 32, 128), (9, 33, 129), (32, 100, 300),
                                   (33, 1024, 1024), (3, 4096, 1000)])
def test_matches_reference(storage, m, n, k):
    gen = torch.Generator().manual_seed(m * 1000 + n + k)
    w, x = torch.randn(n, k, generator=gen), torch.randn(m, k, generator=gen)
    y = cpu_gemm.PackedLinear(w, storage=storage)(x)
    ref = x.double() @ w.to(storage).double().T  # bf16 storage: the weights' bf16 values, float arithmetic
    assert y.shape == (m, n) and y.dtype == torch.float32
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=2e-6 * math.sqrt(k) * 4)


@needs_kernel
@pytest.mark.parametrize("storage", STORAGE)
def test_a_row_does_not_depend_on_its_batch(storage):
    gen = torch.Generator().manual_seed(1)
    w, x = torch.randn(200, 700, generator=gen), torch.randn(33, 700, generator=gen)
    lin = cpu_gemm.PackedLinear(w, storage=storage)
    batched = lin(x)
    for i in (0, 7, 8, 31, 32):
        assert torch.equal(lin(x[i:i + 1]), batched[i:i + 1])
    assert torch.equal(lin(x[5:21]), batched[5:21])


@needs_kernel
def test_runner_linear_adds_bias_and_gelu():
    gen = torch.Generator().manual_seed(2)
    w, b, x = torch.randn(64, 48, generator=gen), torch.randn(64, generator=gen), torch.randn(2, 3, 48, generator=gen)
    lin = Linear(w, b, gelu=True)
    assert lin.kernel is not None and lin.packed is None and lin.weight is None
    torch.testing.assert_close(lin(x), F.gelu(F.linear(x, w, b)), rtol=1e-5, atol=1e-5)


@needs_kernel
def test_bad_input_is_refused():
    lin = cpu_gemm.PackedLinear(torch.randn(8, 4))
    with pytest.raises(ValueError, match=r"\(m, 4\) float32"):
        lin(torch.randn(2, 5))
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        cpu_gemm.PackedLinear(torch.randn(8, 4), storage=torch.float16)


@needs_kernel
def test_bfloat16_runner_is_bf16_weights_with_float32_arithmetic():
    """dtype=bfloat16 on the kernel: the logits are those of float32 arithmetic on the bf16-rounded weights."""
    model = build_random_musicgen("tiny", seed=3)
    rounded = build_random_musicgen("tiny", seed=3)
    with torch.no_grad():
        for p in rounded.decoder.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    bf16 = MusicgenRunner(model, max_slots=2, dtype=torch.bfloat16)
    ref = MusicgenRunner(rounded, max_slots=2, dtype=torch.float32)
    assert bf16.dtype == torch.float32 and bf16.weight_dtype == torch.bfloat16
    assert bf16.layers[0].fc1.kernel.storage == torch.bfloat16
    states = ref.text_states([[5, 6, 7], [8, 9]])
    tokens, positions = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]]), torch.tensor([0, 0])
    for runner in (bf16, ref):
        runner.ensure_slots(2)
        runner.set_cross([0, 1], states)
    assert torch.equal(bf16.decode_step(tokens, positions), ref.decode_step(tokens, positions))


def test_switched_off_falls_back_to_onednn():
    code = ("import torch\n"
            "from echotune_mcp.engine import cpu_gemm\n"
            "from echotune_mcp.engine.musicgen_runner import MusicgenRunner\n"
            "from echotune_mcp.engine.musicgen_shapes import build_random_musicgen\n"
            "assert cpu_gemm.load() is None, 'kernel loaded'\n"
            "r = MusicgenRunner(build_random_musicgen('tiny'), max_slots=1, dtype=torch.bfloat16)\n"
            "assert r.dtype == torch.bfloat16 and r.layers[0].fc1.kernel is None\n"
            "print(cpu_gemm.unavailable_reason())\n")
    env = dict(os.environ, ECHOTUNE_CPU_GEMM="off")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "ECHOTUNE_CPU_GEMM is off" in done.stdout

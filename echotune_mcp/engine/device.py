"""Pick the compute device at run time: CUDA, then Apple MPS, then CPU; ``ECHOTUNE_DEVICE`` overrides.

Each device gets the dtype it runs fastest without hurting quality: bf16 on CUDA cards that support
it (fp16 otherwise), fp16 on MPS, fp32 on CPU (CPU half precision is slower, not faster); the
MusicGen engine's own choice is :func:`generation_dtype`.
"""

from __future__ import annotations

from dataclasses import dataclass

VALID = ("cuda", "mps", "cpu")


@dataclass(frozen=True)
class DeviceChoice:
    device: str
    dtype: str
    reason: str


def pick_device(override: str | None = None) -> DeviceChoice:
    import torch

    if override:
        kind = override.split(":", 1)[0]
        if kind not in VALID:
            raise ValueError(f"ECHOTUNE_DEVICE={override!r} is not a device; use one of {', '.join(VALID)}")
        if kind == "cuda" and not torch.cuda.is_available():
            raise ValueError("ECHOTUNE_DEVICE asks for cuda but no CUDA device is visible")
        if kind == "mps" and not torch.backends.mps.is_available():
            raise ValueError("ECHOTUNE_DEVICE asks for mps but Apple MPS is not available")
        return DeviceChoice(override, _dtype_for(kind), "set by ECHOTUNE_DEVICE")
    if torch.cuda.is_available():
        return DeviceChoice("cuda", _dtype_for("cuda"), f"CUDA device {torch.cuda.get_device_name(0)}")
    if torch.backends.mps.is_available():
        return DeviceChoice("mps", "float16", "Apple MPS")
    return DeviceChoice("cpu", "float32", "no GPU visible")


def _dtype_for(kind: str) -> str:
    if kind == "cuda":
        import torch

        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float16"
    return "float16" if kind == "mps" else "float32"


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 in the CPU flags (Linux): bf16 matmuls then run at full rate."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def generation_dtype(choice: DeviceChoice, override: str | None = None) -> str:
    """The MusicGen engine's dtype: the device's, except bf16 weights on CPUs where they pay.

    Decoding one or a few requests is bound by reading the weights, so halving their bytes pays on a
    CPU that either has the engine's own kernel (``cpu_gemm``, AVX-512: bf16-stored weights, float32
    arithmetic) or native bf16 dot products for oneDNN (docs/BENCHMARKS.md, "Engine").
    ``ECHOTUNE_ENGINE_DTYPE`` overrides (float32 reproduces transformers' generate token for token).
    """
    if override:
        if override not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"ECHOTUNE_ENGINE_DTYPE={override!r}; use float32, bfloat16 or float16")
        return override
    if choice.device == "cpu":
        from . import cpu_gemm

        if cpu_gemm.load() is not None or cpu_has_native_bf16():  # the kernel streams bf16 weights
            return "bfloat16"
    return choice.dtype

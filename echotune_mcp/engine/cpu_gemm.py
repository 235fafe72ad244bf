"""The engine's float32 matmul for decode-sized batches on AVX-512 CPUs (``cpu_gemm.c``), built on first use.

A batched decode step streams every decoder weight once and multiplies it by 2..32 rows. oneDNN does
not overlap that streaming with the arithmetic at these shapes; the C kernel prefetches the weights
ahead of its FMA loop and runs a 16-request musicgen-small step's matmuls ~1.5x faster (see
docs/BENCHMARKS.md, "Engine"). It is compiled once per machine with the system C compiler into the
user cache (``ECHOTUNE_KERNEL_DIR`` overrides) and linked against the OpenMP runtime torch already
loaded, so both share one thread pool. Where that cannot be done (no compiler, no AVX-512, another
OpenMP runtime, ``ECHOTUNE_CPU_GEMM=off``) :func:`load` returns None and the runner keeps oneDNN.

Loading a shared object runs its code, so the cache is treated as hostile until proven ours: the
folder is created 0700, and a library is loaded only if it and the sha256 recorded when it was built
are this user's, writable by nobody else, and match (:func:`library`); anything else is rebuilt, and
a folder that is not this user's is refused (oneDNN then), the reason logged either way.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import logging
import os
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from ..config import _env, _env_bool
from .device import cpu_flags

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("cpu_gemm.c")
STORAGE = (torch.float32, torch.bfloat16)  # weight formats the kernel streams; its arithmetic is float32
FLAGS = ["-O3", "-mavx512f", "-mfma", "-fopenmp", "-fPIC"]
_lock = threading.Lock()
_state: dict[str, object] = {}


def _loaded_openmp() -> list[str]:
    """Paths of the OpenMP runtimes mapped into this process (torch loads exactly one)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            paths = {line.split()[-1] for line in fh if "/" in line}
    except OSError:
        return []
    return sorted(p for p in paths if Path(p).name.startswith(("libgomp", "libiomp", "libomp")))


def _torch_libgomp(runtimes: list[str]) -> str | None:
    """The libgomp torch runs its thread pool on, which the kernel links against (one runtime, torch's pool).

    Other packages may have mapped their own vendored copy already (scikit-learn's, imported by librosa for
    audio analysis); that one is theirs and stays theirs, so torch's is picked by where it lives. A torch
    that uses the system's runtime instead counts only when it is the one OpenMP runtime in the process.
    """
    gomp = [p for p in runtimes if Path(p).name.startswith("libgomp")]
    torch_lib = Path(torch.__file__).resolve().parent / "lib"
    own = [p for p in gomp if Path(p).resolve().parent == torch_lib]
    if len(own) == 1:
        return own[0]
    return gomp[0] if len(runtimes) == 1 and len(gomp) == 1 else None


def kernel_dir() -> Path:
    explicit = _env("KERNEL_DIR")
    if explicit:
        return Path(explicit).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("echotune-mcp")) / "kernels"


def compiler() -> str | None:
    """The system C compiler the kernel is built with (``$CC``, else cc, else gcc), or None."""
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _private_dir(directory: Path) -> str:
    """Create ``directory`` 0700, or make sure the existing one is this user's and closed to others.

    Returns '' when what it holds can be trusted, else why not (it was writable by others: now closed,
    but a library in it may have been swapped). Raises RuntimeError when it is not this user's.
    """
    try:
        directory.mkdir(parents=True, mode=0o700)
        return ""
    except FileExistsError:
        pass
    st = os.stat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise RuntimeError(f"the kernel directory {directory} is not a directory")
    if st.st_uid != os.geteuid():
        raise RuntimeError(f"the kernel directory {directory} belongs to uid {st.st_uid}, not to this user "
                           f"(uid {os.geteuid()}); set ECHOTUNE_KERNEL_DIR to a folder of your own")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(directory, 0o700)
    return "its folder was writable by other users" if st.st_mode & 0o022 else ""


def _untrusted(path: Path) -> str:
    """Why a file may not be trusted ('' when it is this user's regular file, writable by nobody else)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "it is missing"
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    if st.st_uid != os.geteuid():
        return f"it belongs to uid {st.st_uid}, not to this user"
    if st.st_mode & 0o022:
        return "it is group- or world-writable"
    return ""


def _record(lib: Path) -> Path:
    return lib.with_name(lib.name + ".sha256")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _unverified(lib: Path) -> str:
    """Why ``lib`` may not be loaded ('' when it and its hash record are trusted and the hash matches)."""
    for path, what in ((lib, "the library"), (_record(lib), "its recorded hash")):
        why = _untrusted(path)
        if why:
            return f"{what}: {why}"
    if not hmac.compare_digest(_sha256(lib), _record(lib).read_text(encoding="ascii", errors="replace").strip()):
        return "its sha256 differs from the one recorded when it was built"
    return ""


@contextmanager
def _build_lock(directory: Path, wait_s: float = 300.0) -> Iterator[None]:
    """One builder at a time per kernel folder (other processes wait, at most ``wait_s``)."""
    import fcntl

    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"another process has been building the kernel in {directory} "
                                       f"for over {wait_s:.0f} s") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)


def library(gomp: str, directory: Path | None = None) -> Path:
    """The kernel's shared object, loadable as it is: verified, else (re)built privately.

    Built once per source, flags, compiler and OpenMP runtime into ``directory`` (the kernel folder,
    created 0700); the library's sha256 is recorded beside it (0600) when it is built. A library is
    returned only if it and its record are this user's, writable by nobody else, and the hash matches;
    otherwise (tampered, loosened permissions, a folder others could write to, an older build with no
    record) it is rebuilt, with the reason logged. Raises RuntimeError when it cannot be built.
    """
    cc = compiler()
    if not cc:
        raise RuntimeError("no C compiler (cc/gcc) on PATH")
    directory = directory or kernel_dir()
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS + [cc, gomp]).encode()).hexdigest()[:16]
    out = directory / f"cpu_gemm-{key}.so"
    open_dir = _private_dir(directory)
    with _build_lock(directory):
        why = open_dir or _unverified(out)
        if not why:
            return out
        if out.exists() or out.is_symlink() or _record(out).exists():
            log.warning("rebuilding the engine CPU kernel %s: %s", out, why)
        with tempfile.TemporaryDirectory(dir=directory) as tmp:  # mkdtemp: 0700
            obj, lib, record = Path(tmp) / "cpu_gemm.o", Path(tmp) / "cpu_gemm.so", Path(tmp) / "cpu_gemm.sha256"
            # link against torch's own libgomp (not the compiler's) so the process keeps one OpenMP runtime
            for cmd in ([cc, *FLAGS, "-c", str(SOURCE), "-o", str(obj)],
                        [cc, "-shared", str(obj), gomp, f"-Wl,-rpath,{Path(gomp).parent}", "-o", str(lib)]):
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
                if done.returncode:
                    raise RuntimeError(f"{' '.join(cmd[:2])} failed: {done.stderr.strip()[-500:]}")
            os.chmod(lib, 0o700)
            fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(_sha256(lib) + "\n")
            os.replace(record, _record(out))  # both renames are atomic, the record first: a reader that
            os.replace(lib, out)  # sees the new library also sees its hash
        why = _unverified(out)
        if why:
            raise RuntimeError(f"the kernel just built in {directory} does not verify: {why}")
        return out


def load() -> ctypes.CDLL | None:
    """The compiled kernel, or None where it cannot run here (the reason is logged once)."""
    with _lock:
        if "lib" in _state:
            return _state["lib"]  # type: ignore[return-value]
        lib, why = None, ""
        if not _env_bool("CPU_GEMM", True):
            why = "ECHOTUNE_CPU_GEMM is off"
        elif "avx512f" not in cpu_flags():
            why = "the CPU has no AVX-512"
        else:
            runtimes = _loaded_openmp()
            gomp = _torch_libgomp(runtimes)
            if gomp is None:
                why = f"torch's OpenMP runtime is not one libgomp ({runtimes or 'none found'})"
            else:
                try:
                    lib = ctypes.CDLL(str(library(gomp)))  # its folder is private: nobody swaps it in between
                    if _loaded_openmp() != runtimes:
                        lib, why = None, "loading the kernel brought in a second OpenMP runtime"
                except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                    lib, why = None, f"building it failed: {exc}"
        if lib is not None:
            i64, vp = ctypes.c_int64, ctypes.c_void_p
            lib.echotune_packed_bytes.argtypes, lib.echotune_packed_bytes.restype = [i64, i64, ctypes.c_int], i64
            for name in ("echotune_pack_f32", "echotune_pack_bf16"):
                getattr(lib, name).argtypes, getattr(lib, name).restype = [vp, vp, i64, i64], None
            for name in ("echotune_gemm_f32", "echotune_gemm_bf16"):
                getattr(lib, name).argtypes = [vp, vp, vp, i64, i64, i64, ctypes.c_int]
                getattr(lib, name).restype = None
        else:
            log.info("engine CPU matmul kernel not used (%s); oneDNN runs the decoder's matmuls", why)
        _state["lib"], _state["why"] = lib, why
        return lib


def runs(device: str, dtype: torch.dtype) -> bool:
    """Whether weights of ``dtype`` on ``device`` (a type: "cpu", "cuda", ...) are multiplied by this kernel."""
    return device == "cpu" and dtype in STORAGE and load() is not None


def unavailable_reason() -> str:
    """Why :func:`load` returned None ('' when the kernel is in use)."""
    load()
    return str(_state.get("why", ""))


class PackedLinear:
    """A weight (out, in) packed for the kernel; calling it computes ``x @ weight.T`` in float32.

    ``storage`` float32 keeps the weight exact; bfloat16 stores it rounded to bf16 (as
    ``weight.to(torch.bfloat16)``), half the bytes to stream, while the input, products and sums
    stay float32.
    """

    def __init__(self, weight: torch.Tensor, storage: torch.dtype = torch.float32):
        if weight.device.type != "cpu" or weight.dim() != 2 or storage not in STORAGE:
            raise ValueError("the CPU kernel packs 2-D CPU weights into float32 or bfloat16")
        lib = load()
        if lib is None:
            raise RuntimeError(f"the engine's CPU kernel is not usable here: {unavailable_reason()}")
        (self.n, self.k), self.storage = weight.shape, storage
        bf16 = storage == torch.bfloat16
        w = weight.detach().to(storage).contiguous()
        self.packed = torch.empty(lib.echotune_packed_bytes(self.n, self.k, int(bf16)), dtype=torch.uint8)
        (lib.echotune_pack_bf16 if bf16 else lib.echotune_pack_f32)(w.data_ptr(), self.packed.data_ptr(), self.n, self.k)
        self._gemm = lib.echotune_gemm_bf16 if bf16 else lib.echotune_gemm_f32

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (m, k) float32 -> (m, n) float32."""
        x = x.contiguous()
        if x.dtype != torch.float32 or x.dim() != 2 or x.shape[1] != self.k:
            raise ValueError(f"expected a (m, {self.k}) float32 input, got {tuple(x.shape)} {x.dtype}")
        y = torch.empty(x.shape[0], self.n, dtype=torch.float32)
        if x.shape[0]:
            self._gemm(x.data_ptr(), self.packed.data_ptr(), y.data_ptr(), x.shape[0], self.n, self.k,
                       torch.get_num_threads())
        return y

"""Issue #13 item 9: the engine's CPU kernel is loaded only if it is ours, private and the library we built.

Each case plants a hostile shared object where the kernel is cached: its constructor writes a marker
file the moment anything loads it. The kernel must then be rebuilt (or refused for oneDNN), the
marker must never appear, and what is loaded must match the hash recorded when it was built.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from echotune_mcp.engine.device import cpu_flags

if os.environ.get("CI"):
    import torch  # noqa: F401  - a missing dependency fails under CI
else:
    pytest.importorskip("torch")

from echotune_mcp.engine import cpu_gemm  # noqa: E402

HAS_AVX512 = "avx512f" in cpu_flags()
if not HAS_AVX512:  # hardware, not setup: the kernel cannot run on this CPU at all
    pytest.skip("the CPU has no AVX-512: the engine's kernel never loads here", allow_module_level=True)
if cpu_gemm.compiler() is None and not os.environ.get("CI"):
    pytest.skip("no C compiler: install one (`apt-get install gcc`) to build the engine's kernel",
                allow_module_level=True)

EVIL_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void planted(void) {
    const char *p = getenv("ECHOTUNE_TEST_MARKER");
    FILE *f = p ? fopen(p, "w") : NULL;
    if (f) { fputs("loaded", f); fclose(f); }
}
"""


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A fresh kernel folder for load() (the process's cached result is put back afterwards) and a planted library."""
    saved = dict(cpu_gemm._state)
    cpu_gemm._state.clear()
    folder = tmp_path / "cache" / "kernels"
    marker = tmp_path / "planted-library-was-loaded"
    monkeypatch.setenv("ECHOTUNE_KERNEL_DIR", str(folder))
    monkeypatch.setenv("ECHOTUNE_TEST_MARKER", str(marker))
    monkeypatch.delenv("ECHOTUNE_CPU_GEMM", raising=False)
    evil = tmp_path / "planted.so"
    (tmp_path / "planted.c").write_text(EVIL_C)
    subprocess.run([cpu_gemm.compiler(), "-shared", "-fPIC", str(tmp_path / "planted.c"), "-o", str(evil)],
                   check=True, capture_output=True, timeout=120)

    def reload():
        cpu_gemm._state.clear()
        return cpu_gemm.load()

    yield folder, evil, marker, reload
    cpu_gemm._state.clear()
    cpu_gemm._state.update(saved)


def _built(folder: Path) -> tuple[Path, Path]:
    libs = sorted(folder.glob("cpu_gemm-*.so"))
    assert len(libs) == 1, libs
    return libs[0], libs[0].with_name(libs[0].name + ".sha256")


def _works(lib) -> None:
    import torch

    w, x = torch.randn(40, 24), torch.randn(3, 24)
    torch.testing.assert_close(cpu_gemm.PackedLinear(w)(x), x @ w.T, rtol=1e-5, atol=1e-5)


def _plant(evil: Path, lib: Path, record: Path, matching_hash: bool) -> bytes:
    """Put the planted library where the kernel was (owner-only modes), with its own hash recorded or not."""
    data = evil.read_bytes()
    lib.unlink()
    lib.write_bytes(data)
    os.chmod(lib, 0o700)
    if matching_hash:  # an attacker who can write here can also recompute the record
        record.write_text(hashlib.sha256(data).hexdigest() + "\n")
    return data


def _assert_rebuilt(lib: Path, record: Path, planted: bytes, marker: Path) -> None:
    assert not marker.exists(), "the planted library was loaded"
    assert lib.read_bytes() != planted
    assert hashlib.sha256(lib.read_bytes()).hexdigest() == record.read_text().strip()
    assert not stat.S_IMODE(os.stat(lib).st_mode) & 0o022 and stat.S_IMODE(os.stat(record).st_mode) == 0o600


def test_the_kernel_folder_is_private_and_the_hash_is_recorded_at_build(kernel_env):
    folder, _evil, _marker, reload = kernel_env
    lib = reload()
    assert lib is not None, cpu_gemm.unavailable_reason()
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    path, record = _built(folder)
    assert stat.S_IMODE(os.stat(record).st_mode) == 0o600 and not stat.S_IMODE(os.stat(path).st_mode) & 0o022
    assert record.read_text().strip() == hashlib.sha256(path.read_bytes()).hexdigest()
    _works(lib)
    before = path.stat().st_mtime_ns
    assert reload() is not None and path.stat().st_mtime_ns == before  # a verified library is not rebuilt


def test_a_library_with_changed_bytes_is_rebuilt_never_loaded(kernel_env, caplog):
    folder, evil, marker, reload = kernel_env
    assert reload() is not None, cpu_gemm.unavailable_reason()
    lib, record = _built(folder)
    planted = _plant(evil, lib, record, matching_hash=False)
    with caplog.at_level(logging.WARNING, logger="echotune_mcp.engine.cpu_gemm"):
        kernel = reload()
    assert kernel is not None, cpu_gemm.unavailable_reason()
    _assert_rebuilt(lib, record, planted, marker)
    assert "sha256 differs from the one recorded" in caplog.text
    _works(kernel)


def test_a_group_writable_library_or_record_is_rebuilt_never_loaded(kernel_env, caplog):
    folder, evil, marker, reload = kernel_env
    assert reload() is not None, cpu_gemm.unavailable_reason()
    lib, record = _built(folder)
    for loosen in (lib, record):
        planted = _plant(evil, lib, record, matching_hash=True)  # the hash matches: only the mode gives it away
        os.chmod(loosen, 0o770 if loosen == lib else 0o662)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="echotune_mcp.engine.cpu_gemm"):
            kernel = reload()
        assert kernel is not None, cpu_gemm.unavailable_reason()
        _assert_rebuilt(lib, record, planted, marker)
        assert "group- or world-writable" in caplog.text


def test_a_folder_others_could_write_to_is_closed_and_its_library_rebuilt(kernel_env, caplog):
    folder, evil, marker, reload = kernel_env
    assert reload() is not None, cpu_gemm.unavailable_reason()
    lib, record = _built(folder)
    planted = _plant(evil, lib, record, matching_hash=True)  # modes and hash all look right ...
    os.chmod(folder, 0o777)  # ... but anyone could have put them there
    with caplog.at_level(logging.WARNING, logger="echotune_mcp.engine.cpu_gemm"):
        kernel = reload()
    assert kernel is not None, cpu_gemm.unavailable_reason()
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    _assert_rebuilt(lib, record, planted, marker)
    assert "writable by other users" in caplog.text


def test_files_or_a_folder_of_another_user_are_never_loaded(kernel_env, tmp_path):
    folder, evil, marker, reload = kernel_env
    assert reload() is not None, cpu_gemm.unavailable_reason()
    lib, record = _built(folder)
    if os.geteuid() == 0:  # only root can hand a file to another user
        planted = _plant(evil, lib, record, matching_hash=True)
        os.chown(lib, 65534, 65534)
        assert reload() is not None, cpu_gemm.unavailable_reason()
        _assert_rebuilt(lib, record, planted, marker)
        assert os.stat(lib).st_uid == 0
        planted = _plant(evil, lib, record, matching_hash=True)
        os.chown(folder, 65534, 65534)
        assert reload() is None  # not ours: refused outright, oneDNN runs the matmuls
        assert "belongs to uid 65534" in cpu_gemm.unavailable_reason()
        assert not marker.exists() and lib.read_bytes() == planted
    else:  # as a plain user: a folder that is someone else's (the filesystem root) is refused the same way
        os.environ["ECHOTUNE_KERNEL_DIR"] = "/"
        assert reload() is None and "belongs to uid 0" in cpu_gemm.unavailable_reason()


def test_a_build_failure_falls_back_to_onednn_with_the_reason(kernel_env, monkeypatch):
    _folder, _evil, marker, reload = kernel_env
    monkeypatch.setenv("CC", shutil.which("false") or "/bin/false")
    assert reload() is None
    assert "building it failed" in cpu_gemm.unavailable_reason()
    assert not marker.exists()


def test_the_kernel_loads_after_another_package_mapped_its_own_libgomp():
    """Audio analysis imports librosa, which maps scikit-learn's vendored libgomp before torch's: the kernel
    must still link against torch's runtime, not switch itself off for the rest of the process."""
    import sys

    code = ("import sklearn.utils, torch\n"
            "from echotune_mcp.engine import cpu_gemm\n"
            "gomps = [p for p in cpu_gemm._loaded_openmp() if 'libgomp' in p]\n"
            "assert len(gomps) >= 2, gomps\n"
            "assert cpu_gemm.load() is not None, cpu_gemm.unavailable_reason()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]

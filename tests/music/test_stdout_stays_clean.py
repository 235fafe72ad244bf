"""stdout is the JSON-RPC channel of a stdio server: nothing we import may print to it.

pyfluidsynth prints "'fluidsynth' was found at ..." on import whenever the environment has ``CI`` set, and
pretty_midi (used by the composer, export and transcription) imports it, mid-session, at the first render.
"""

from __future__ import annotations

import os
import subprocess
import sys


def test_importing_the_music_stack_prints_nothing_even_under_ci():
    code = ("import echotune_mcp.music.midi, echotune_mcp.music.render, echotune_mcp.music.transcribe, pretty_midi; "
            "import fluidsynth")
    env = {**os.environ, "CI": "true"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "", f"the music stack printed to stdout: {proc.stdout!r}"


def test_importing_the_server_loads_no_fluidsynth():
    """Quiet, but not eager: libfluidsynth links the system libgomp, which the CPU matmul kernel will not share
    with torch's own OpenMP runtime; it is loaded only when a render needs it."""
    code = "import sys, echotune_mcp.server, echotune_mcp.music; print('fluidsynth' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"

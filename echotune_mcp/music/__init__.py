"""Music: the offline symbolic composer and everything around it.

params (controls from text and arguments) → composer (arrangement) → render (FluidSynth stems) →
master (mix, loudness, true peak) → midi (export); analysis measures audio (tempo, key, loudness).
Import the submodules directly; this package imports nothing heavy on purpose, with one exception below.
"""

import contextlib
import sys

# pyfluidsynth prints "'fluidsynth' was found at ..." to stdout when it is imported with CI set in the
# environment, and pretty_midi imports it at its own import, which can happen mid-session. On a stdio server
# stdout is the JSON-RPC channel, so the first import happens here, with its output sent to stderr.
with contextlib.redirect_stdout(sys.stderr):
    try:
        import fluidsynth  # noqa: F401
    except (ImportError, OSError):  # no libfluidsynth: render.py says so when a render needs it
        pass

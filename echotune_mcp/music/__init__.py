"""Music: the offline symbolic composer and everything around it.

params (controls from text and arguments) → composer (arrangement) → render (FluidSynth stems) →
master (mix, loudness, true peak) → midi (export); analysis measures audio (tempo, key, loudness).
Import the submodules directly; this package imports nothing heavy on purpose.
"""

"""The local inference engine: device choice, model cards, the model manager (weights on disk and in
memory), and runners (Demucs segment batching today; the MusicGen runner is the next step)."""

"""Randomly initialised MusicGen models of real shapes, for tests and benchmarks.

Weights cannot be downloaded in CI, so every neural path is exercised on models built here from
configs: ``tiny`` (a few kB, for correctness tests) and ``small`` (musicgen-small's shape: 24 decoder
layers of width 1024, 4 codebooks of 2048, a T5-base text encoder and the 32 kHz EnCodec, for the
engine benchmark). ``melody-tiny`` is MusicGen-Melody's architecture (decoder-only, chroma + text
prefix) at test size. The configs mirror the published checkpoints' ``config.json`` files.
"""

from __future__ import annotations

from typing import Any

# musicgen-small's EnCodec (facebook/encodec_32khz); tiny variants shrink widths, not the structure.
ENCODEC_32K: dict[str, Any] = dict(
    audio_channels=1, chunk_length_s=None, codebook_size=2048, hidden_size=128, num_filters=64,
    sampling_rate=32000, target_bandwidths=[2.2], upsampling_ratios=[8, 5, 4, 4], use_causal_conv=False,
    norm_type="weight_norm", pad_mode="reflect", trim_right_ratio=1.0, num_lstm_layers=2, normalize=False,
    codebook_dim=128)
ENCODEC_TINY: dict[str, Any] = dict(
    audio_channels=1, chunk_length_s=None, codebook_size=64, hidden_size=16, num_filters=4, sampling_rate=16000,
    target_bandwidths=[20.0], upsampling_ratios=[8, 4], num_lstm_layers=1, codebook_dim=16, normalize=False)
T5_BASE: dict[str, Any] = dict(vocab_size=32128, d_model=768, d_ff=3072, d_kv=64, num_layers=12, num_heads=12,
                               feed_forward_proj="relu")
T5_TINY: dict[str, Any] = dict(vocab_size=99, d_model=32, d_ff=37, d_kv=8, num_layers=2, num_heads=4)

SHAPES: dict[str, dict[str, Any]] = {
    "tiny": dict(text=T5_TINY, audio=ENCODEC_TINY,
                 decoder=dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=64,
                              num_codebooks=4)),
    "small": dict(text=T5_BASE, audio=ENCODEC_32K,
                  decoder=dict(vocab_size=2048, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                               ffn_dim=4096, num_codebooks=4)),
}


def build_random_musicgen(shape: str = "tiny", seed: int = 0, melody: bool = False) -> Any:
    """A MusicgenForConditionalGeneration (or MusicgenMelody…) with random weights, in eval mode."""
    import torch
    import transformers
    from transformers import EncodecConfig, T5Config

    transformers.logging.set_verbosity_error()
    spec = SHAPES[shape]
    vocab = spec["decoder"]["vocab_size"]
    special = dict(pad_token_id=vocab, bos_token_id=vocab, decoder_start_token_id=vocab)
    text = T5Config(**spec["text"]).to_dict()
    audio = EncodecConfig(**spec["audio"]).to_dict()
    torch.manual_seed(seed)
    if melody:
        from transformers import (
            MusicgenMelodyConfig,
            MusicgenMelodyDecoderConfig,
            MusicgenMelodyForConditionalGeneration,
        )

        dec = MusicgenMelodyDecoderConfig(**spec["decoder"], **special).to_dict()
        cfg = MusicgenMelodyConfig(text_encoder=text, audio_encoder=audio, decoder=dec, num_chroma=12, chroma_length=235)
        model = MusicgenMelodyForConditionalGeneration(cfg)
    else:
        from transformers import (
            MusicgenConfig,
            MusicgenDecoderConfig,
            MusicgenForConditionalGeneration,
        )

        dec = MusicgenDecoderConfig(**spec["decoder"], **special).to_dict()
        model = MusicgenForConditionalGeneration(MusicgenConfig(text_encoder=text, audio_encoder=audio, decoder=dec))
    model.generation_config.pad_token_id = vocab
    model.generation_config.decoder_start_token_id = vocab
    model.generation_config.bos_token_id = vocab
    return model.eval()

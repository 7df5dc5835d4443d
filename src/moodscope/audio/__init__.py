"""Audio in: decode any supported file to mono float32 at one rate, whole or block by block,
with one error per bad input that names the file (``decode``)."""

from moodscope.audio.decode import (
    AUDIO_EXTENSIONS,
    SAMPLE_RATE,
    audio_info,
    load_audio,
    stream_audio,
)

__all__ = ["AUDIO_EXTENSIONS", "SAMPLE_RATE", "audio_info", "load_audio", "stream_audio"]

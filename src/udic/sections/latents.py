"""Section 2: the ANS words of the latents (spec §5.2).  Entropy decoding
belongs to the model's latent codec (``udic.latent_codecs``); the section is its bytes."""

from __future__ import annotations

from .base import raw_decode, raw_describe, raw_encode

TAG = 2
NAME = "latents"
FLAG = 0
SINCE_VERSION = 1
REQUIRED = True
MODES = ("learned",)  # the sections of a file coded by the learned transform


encode = raw_encode
decode = raw_decode
describe = raw_describe

"""Section 1: the ANS words of the hyper-latent symbols (spec §5.1).  Entropy decoding
belongs to the model's latent codec (``udic.latent_codecs``); the section is its bytes."""

from __future__ import annotations

from .base import raw_decode, raw_describe, raw_encode

TAG = 1
NAME = "hyperlatents"
FLAG = 0
SINCE_VERSION = 1
REQUIRED = True
MODES = ("learned",)  # the sections of a file coded by the learned transform


encode = raw_encode
decode = raw_decode
describe = raw_describe

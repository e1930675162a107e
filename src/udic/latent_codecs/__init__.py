"""Latent codecs: the seam between the networks and the two entropy-coded sections.

See ``base.LatentCodec``.  Each module of this package holds one codec; importing the
package registers them all.
"""

from __future__ import annotations

from .base import EntropyParams, LatentCodec, LatentDecoding, LatentEncoding, crc_integers
from .hyperprior import MeanScaleHyperprior
from .channel import ChannelContextCodec
from .registry import DEFAULT_LATENT_CODEC, latent_codec_class, names, register

__all__ = [
    "ChannelContextCodec",
    "DEFAULT_LATENT_CODEC",
    "EntropyParams",
    "LatentCodec",
    "LatentDecoding",
    "LatentEncoding",
    "MeanScaleHyperprior",
    "crc_integers",
    "latent_codec_class",
    "names",
    "register",
]

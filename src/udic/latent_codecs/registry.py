"""Latent codecs by name, as a weights file's config names them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ModelError

if TYPE_CHECKING:
    from .base import LatentCodec

DEFAULT_LATENT_CODEC = "mean-scale-hyperprior"  # what a weights file without the key uses
CHANNEL_CONTEXT_CODEC = "channel-context"  # the model grows context nets for it (models.ChannelContext)
_REGISTRY: dict[str, type["LatentCodec"]] = {}


def register(cls: type["LatentCodec"]) -> type["LatentCodec"]:
    """Class decorator: make a latent codec available under its ``name``."""
    if _REGISTRY.get(cls.name, cls) is not cls:
        raise ValueError(f"latent codec {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def latent_codec_class(name: str) -> type["LatentCodec"]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ModelError(f"the weights use latent codec {name!r}, which this udic does not know "
                         f"(known: {', '.join(sorted(_REGISTRY))})") from None


def names() -> list[str]:
    return sorted(_REGISTRY)

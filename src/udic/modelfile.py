"""Weights files: safetensors (no pickle), fp16 where it is harmless, tables included.

A weights file holds the network's state, per-rate LoRA deltas (``*.lora.<rate>.A/B``),
the hyper-latent pmf tables (``z_pmf``, ``z_offsets``, computed once at export so every
decoder reads identical numbers), and JSON metadata: the architecture config and how
the weights were made.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load as np_load_bytes
from safetensors.torch import save as st_save_bytes

from .errors import ModelError
from .models import ModelConfig, UdicModel, factorized_pmf_table

FORMAT = "udic-weights"
FORMAT_VERSION = "1"

# Parameters kept in fp32: tiny, and precision-sensitive (gains, GDN, entropy model).
_FP32_SUFFIXES = ("log_gain", "log_inv_gain", "beta", "gamma", "quantiles", "_matrix", "_bias", "_factor")


@dataclass
class LoadedWeights:
    model: UdicModel
    z_pmf: np.ndarray
    z_offsets: np.ndarray
    metadata: dict


def _keep_fp32(name: str) -> bool:
    return any(name.endswith(s) or s in name.rsplit(".", 1)[-1] for s in _FP32_SUFFIXES) or "entropy_bottleneck" in name


def export_bytes(model: UdicModel, info: dict | None = None, fp16: bool = True) -> bytes:
    """Serialise ``model`` (unmerged) with its z tables and metadata."""
    model = model.cpu().float()
    model.unmerge()
    tensors: dict[str, torch.Tensor] = {}
    for name, value in model.state_dict().items():
        if not _stored(name):
            continue  # compressai's own CDF buffers: unused, we store our own tables
        t = value.detach().contiguous()
        if fp16 and t.is_floating_point() and not _keep_fp32(name):
            t = t.half()
        tensors[name] = t
    pmf, offsets = factorized_pmf_table(model.entropy_bottleneck)
    tensors["z_pmf"] = torch.from_numpy(pmf)
    tensors["z_offsets"] = torch.from_numpy(offsets.astype(np.int64))
    lora_meta = model.lora_spec()
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(model.config.to_dict()),
        "lora": json.dumps(lora_meta),
        "info": json.dumps(info or {}),
    }
    return canonical_safetensors(st_save_bytes(tensors, metadata=metadata))


def canonical_safetensors(data: bytes) -> bytes:
    """Rewrite the JSON header with sorted keys so equal weights give equal bytes (and ids)."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # keep the tensor data 8-byte aligned
    return len(text).to_bytes(8, "little") + text + data[8 + n :]


def save(model: UdicModel, path: Path, info: dict | None = None, fp16: bool = True) -> None:
    """Write the weights file atomically, as every output is written (a temp file of its own
    beside it, renamed over it)."""
    from .imageio import atomic_write_bytes

    atomic_write_bytes(path, export_bytes(model, info, fp16), force=True)


def _stored(key: str) -> bool:
    """Whether a state-dict entry travels in a weights file (compressai's own CDF buffers do not:
    the file carries its own tables)."""
    return not (key.startswith("entropy_bottleneck._") or key.endswith(("_offset", "_quantized_cdf", "_cdf_length")))


def _network(config: ModelConfig, lora_meta: dict) -> UdicModel:
    """The network ``config`` describes, with the LoRA deltas ``lora_meta`` lists (unmerged)."""
    model = UdicModel(config)
    modules = dict(model.named_modules())
    for key, spec in lora_meta.items():
        layer_name, rate = key.rsplit(".", 1)
        modules[layer_name].add_lora(rate, int(spec["rank"]), float(spec["alpha"]))
    return model


def load(path: Path, device: str | torch.device = "cpu") -> LoadedWeights:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read weights ({exc.strerror})") from None
    return load_bytes(data, device, str(path))


def load_bytes(data: bytes, device: str | torch.device = "cpu", name: str = "weights") -> LoadedWeights:
    try:
        arrays = np_load_bytes(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        metadata = header.get("__metadata__", {})
    except (SafetensorError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise ModelError(f"{name}: not a safetensors weights file ({exc})") from None
    if metadata.get("format") != FORMAT:
        raise ModelError(f"{name}: not a udic weights file")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{name}: unsupported weights format version {metadata.get('format_version')}")
    try:
        config = ModelConfig.from_dict(json.loads(metadata["config"]))
        lora_meta = json.loads(metadata.get("lora", "{}"))
        if not isinstance(lora_meta, dict):
            raise TypeError("the LoRA table is not a JSON object")
        # The network the metadata describes, built first as shapes only (no memory), must hold
        # exactly the file's tensors: a few hundred bytes of config naming N = 50,000 would
        # otherwise allocate ~90 GB before any tensor was compared.
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in _network(config, lora_meta).state_dict().items() if _stored(k)}
        stored = {k: tuple(v.shape) for k, v in arrays.items() if k not in ("z_pmf", "z_offsets")}
        if expected != stored:
            differ = sorted(k for k in expected.keys() | stored.keys() if expected.get(k) != stored.get(k))
            raise ModelError(f"{name}: weights do not match the architecture their metadata describes "
                             f"({', '.join(differ[:3])}{' …' if len(differ) > 3 else ''})")
        model = _network(config, lora_meta)
        state = {}
        for k, v in arrays.items():
            if k in ("z_pmf", "z_offsets"):
                continue
            state[k] = torch.from_numpy(np.ascontiguousarray(v)).float() if v.dtype != np.int64 else torch.from_numpy(v)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [m for m in missing if _stored(m)]
        if missing or unexpected:
            raise ModelError(f"{name}: weights do not match the architecture (missing {missing[:3]}, unexpected {unexpected[:3]})")
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{name}: weights do not match udic's architecture ({' '.join(str(exc).split())[:200]})") from None
    if "z_pmf" not in arrays or "z_offsets" not in arrays:
        raise ModelError(f"{name}: weights file lacks the hyper-latent tables")
    model.eval().to(device)
    try:
        info = json.loads(metadata.get("info", "{}"))
    except json.JSONDecodeError:
        info = {}
    return LoadedWeights(
        model=model,
        z_pmf=arrays["z_pmf"].astype(np.float64),
        z_offsets=arrays["z_offsets"].astype(np.int64),
        metadata={"config": config.to_dict(), "info": info, "lora": lora_meta},
    )

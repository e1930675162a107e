"""Weights files (``udic.modelfile``): a file whose metadata lies about its network is refused
with one line, before the network it describes is allocated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import build_tiny_model
from udic import modelfile
from udic.errors import ModelError


def _with_metadata(data: bytes, **changes: str) -> bytes:
    """The weights file ``data`` with metadata fields replaced (the tensors' offsets stay valid:
    they count from the end of the header)."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"].update(changes)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n :]


@pytest.fixture(scope="module")
def weights() -> bytes:
    return modelfile.export_bytes(build_tiny_model(seed=5))  # with a rate-2 LoRA


def test_a_file_loads_and_saves_to_the_same_bytes(weights: bytes, tmp_path: Path) -> None:
    loaded = modelfile.load_bytes(weights, name="w.safetensors")
    path = tmp_path / "w.safetensors"
    modelfile.save(loaded.model, path)
    assert path.read_bytes() == weights
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temp file left beside it


def test_a_config_naming_a_larger_network_is_refused_before_it_is_built(weights: bytes, monkeypatch) -> None:
    n = int.from_bytes(weights[:8], "little")
    config = json.loads(json.loads(weights[8 : 8 + n])["__metadata__"]["config"])
    config["N"] = 50_000  # ~90 GB of conv weights if it were built
    built = []
    network = modelfile._network

    def record(cfg, lora):
        built.append(torch.empty(0).device.type)  # the default device the network is built on
        return network(cfg, lora)

    monkeypatch.setattr(modelfile, "_network", record)
    with pytest.raises(ModelError, match=r"bad\.safetensors: weights do not match the architecture"):
        modelfile.load_bytes(_with_metadata(weights, config=json.dumps(config)), name="bad.safetensors")
    assert built == ["meta"]  # shapes only: nothing real was allocated


@pytest.mark.parametrize("lora", ["[]", '{"entropy_bottleneck.1": {"rank": 1, "alpha": 1}}',
                                  '{"g_s.linear.1": {"rank": "x", "alpha": 1}}', '{"nowhere.1": {}}'])
def test_a_malformed_lora_table_is_one_line(weights: bytes, lora: str) -> None:
    with pytest.raises(ModelError, match=r"^bad\.safetensors: weights do not match") as err:
        modelfile.load_bytes(_with_metadata(weights, lora=lora), name="bad.safetensors")
    assert "\n" not in str(err.value)

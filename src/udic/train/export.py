"""Turn a training checkpoint into a packaged weights file and register it.

``python -m udic.train.export CKPT --name udic-hp-base [--package] [--default]``
writes ``<name>-<id>.safetensors`` (fp16 where harmless) and, with ``--package``,
adds it to ``src/udic/weights/registry.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import torch

from .. import hub, modelfile
from ..models import ModelConfig, UdicModel


def load_checkpoint(path: Path) -> tuple[UdicModel, dict]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = UdicModel(ModelConfig.from_dict(state["model_config"]))
    lora = state.get("lora", {})
    modules = dict(model.named_modules())
    for key, spec in lora.items():
        layer, rate = key.rsplit(".", 1)
        modules[layer].add_lora(rate, int(spec["rank"]), float(spec["alpha"]))
    load_weights(model, state["model"], f"{path}: checkpoint")
    return model.eval(), state


def load_weights(model: UdicModel, weights: dict, source: str) -> None:
    """Load ``weights`` into ``model``, every tensor accounted for, and rebuild the
    hyper-latent tables.  compressai's CDF buffers are derived (``update()`` rebuilds
    them, tightening the quantiles first) and change size, so they are left out."""
    weights = {k: v for k, v in weights.items() if not k.startswith("entropy_bottleneck._")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.startswith("entropy_bottleneck._")]
    if missing or unexpected:
        raise ValueError(f"{source} does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.entropy_bottleneck.update(force=True)


def loram_info(state: dict) -> dict:
    """How a LoRA run's deltas were made (the bench's training-cost table reads it)."""
    cfg = state.get("train_config", {})
    return {"base_rate": cfg.get("base_rate"), "rank": cfg.get("rank"), "hyper_rank": cfg.get("hyper_rank"),
            "exclude": cfg.get("exclude", ""), "steps_per_rate": cfg.get("steps_per_rate"),
            "rates": list(state.get("done", [])), "wall_per_rate": dict(state.get("wall_per_rate", {}))}


def base_training(base: str) -> dict:
    """Steps and wall time of the base a LoRA run started from (empty if it is not a
    readable training checkpoint), so a family file says what its base cost."""
    path = Path(base)
    if path.suffix != ".pt" or not path.exists():
        return {}
    state = torch.load(path, map_location="cpu", weights_only=False)
    return {"steps": int(state.get("step", 0)), "wall_seconds": float(state.get("wall", 0.0)),
            "train_config": state.get("train_config", {})}


def export(ckpt: Path, name: str, out_dir: Path, info: dict, package: bool, default: bool, description: str) -> Path:
    model, state = load_checkpoint(ckpt)
    info = dict(info)
    info.setdefault("steps", int(state.get("step", 0)))
    info.setdefault("wall_seconds", float(state.get("wall", 0.0)))
    info.setdefault("train_config", state.get("train_config", {}))
    if state.get("lora") and "done" in state:
        info.setdefault("loram", loram_info(state))
        base = base_training(state.get("train_config", {}).get("base", ""))
        if base:
            info.setdefault("base_training", base)
    data = modelfile.export_bytes(model, info=info, fp16=True)
    model_id = hub.model_id_for_bytes(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    filename = f"{name}-{model_id}.safetensors"
    path = out_dir / filename
    path.write_bytes(data)
    if package:
        reg_path = hub.packaged_dir() / "registry.json"
        reg = json.loads(reg_path.read_text()) if reg_path.exists() else {"default": None, "models": []}
        reg["models"] = [m for m in reg["models"] if m["id"] != model_id]
        reg["models"].append(
            {
                "id": model_id,
                "name": name,
                "filename": filename,
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "description": description,
                "packaged": True,
            }
        )
        if default or not reg.get("default"):
            reg["default"] = model_id
        reg_path.write_text(json.dumps(reg, indent=2) + "\n")
    print(f"{path} ({len(data)} bytes, id {model_id})")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m udic.train.export", description=__doc__)
    p.add_argument("ckpt", type=Path)
    p.add_argument("--name", default="udic-hp-base")
    p.add_argument("--out-dir", type=Path, default=None)
    p.add_argument("--package", action="store_true", help="write into the package and its registry")
    p.add_argument("--default", action="store_true", help="make it the registry default")
    p.add_argument("--description", default="")
    p.add_argument("--info", default="{}", help="JSON merged into the file's training info")
    a = p.parse_args(argv)
    out_dir = a.out_dir or (hub.packaged_dir() if a.package else Path("."))
    export(a.ckpt, a.name, out_dir, json.loads(a.info), a.package, a.default, a.description)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

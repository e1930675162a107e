"""Command-line options generated from a config dataclass (one flag per field), and recipe files.

A recipe is a TOML file of ``field = value`` lines (``--config recipe.toml``): its values
replace the dataclass defaults, and flags given on the command line replace the file's.
The resolved recipe (every field, after both) is what a run saves with its checkpoints,
so a run can always be repeated from its own output folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tomllib
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _parse_bool(text: str) -> bool:
    return text.lower() in ("1", "true", "yes", "on")


def _defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cls):
        out[f.name] = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return out


def _coerce(name: str, value: Any, default: Any) -> Any:
    """A TOML value as the field's type; anything else is an error naming the key."""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, list):
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return list(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
        # a list of numbers for a comma-separated field (e.g. lambdas = [0.001, 0.002])
        if isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return ",".join(repr(float(v)) for v in value)
    raise ValueError(f"{name} = {value!r}: expected {type(default).__name__}")


def read_recipe(cls: type, path: Path) -> dict[str, Any]:
    """The values of a recipe file, checked against ``cls``'s fields and types."""
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the recipe ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not a valid TOML recipe ({exc})") from None
    defaults = _defaults(cls)
    values = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in defaults:
            raise ValueError(f"{path}: unknown recipe key {key!r}")
        try:
            values[name] = _coerce(name, value, defaults[name])
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return values


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a recipe cannot hold {value}")
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are valid TOML escapes
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ValueError(f"a recipe cannot hold {type(value).__name__}")


def recipe_toml(cfg: Any, header: str = "") -> str:
    """Every field of a config dataclass as a TOML recipe that ``read_recipe`` reads back."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"{f.name} = {_toml_value(getattr(cfg, f.name))}" for f in dataclasses.fields(cfg)]
    return "\n".join(lines) + "\n"


def parse_config(cls: type[T], argv: list[str] | None, prog: str, description: str | None) -> T:
    """Build ``cls`` from ``argv``: ``--some-field VALUE`` for every dataclass field, on top
    of the values of ``--config FILE`` if given (defaults < file < command line)."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=None,
                        help="a TOML recipe whose values replace the defaults; flags given here override it")
    for name, default in _defaults(cls).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, type=_parse_bool, default=default)
        elif isinstance(default, list):
            parser.add_argument(flag, type=int, nargs="*", default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--config", type=Path, default=None)
    known, _ = first.parse_known_args(argv)
    if known.config is not None:
        try:
            parser.set_defaults(**read_recipe(cls, known.config))
        except ValueError as exc:
            parser.error(str(exc))
    values = vars(parser.parse_args(argv))
    values.pop("config")
    return cls(**values)


def fast_bf16(device_type: str = "cpu") -> bool:
    """Whether bf16 autocast speeds training up here: on CUDA, or on a CPU with AVX-512
    (bf16/AMX kernels).  On an AVX2-only CPU oneDNN emulates bf16 and a step measured
    ~7x slower than fp32 (3.8 s against 0.5 s for the narrow base), so a recipe's
    ``bf16 = true`` means "where it is fast"."""
    if device_type != "cpu":
        return True
    import torch

    return torch.backends.cpu.get_cpu_capability().upper().startswith("AVX512")

"""Command-line options generated from a config dataclass (one flag per field)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def _parse_bool(text: str) -> bool:
    return text.lower() in ("1", "true", "yes", "on")


def parse_config(cls: type[T], argv: list[str] | None, prog: str, description: str | None) -> T:
    """Build ``cls`` from ``argv``: ``--some-field VALUE`` for every dataclass field."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        default: Any = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, type=_parse_bool, default=default)
        elif isinstance(default, list):
            parser.add_argument(flag, type=int, nargs="*", default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    return cls(**vars(parser.parse_args(argv)))

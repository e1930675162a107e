"""``python -m udic.train``: train (or resume) a model; see TrainConfig for options."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from .loop import TrainConfig, train


def parse_args(argv: list[str]) -> TrainConfig:
    parser = argparse.ArgumentParser(prog="python -m udic.train", description=__doc__)
    for f in dataclasses.fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=default)
        elif isinstance(default, list):
            parser.add_argument(flag, type=int, nargs="*", default=default)
        else:
            parser.add_argument(flag, type=type(default), default=default)
    ns = parser.parse_args(argv)
    return TrainConfig(**{k: v for k, v in vars(ns).items()})


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    train(cfg, progress=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m udic.train``: train (or resume) a model; see TrainConfig for options."""

from __future__ import annotations

import sys

from .loop import TrainConfig, train
from .options import parse_config


def parse_args(argv: list[str]) -> TrainConfig:
    return parse_config(TrainConfig, argv, "python -m udic.train", __doc__)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    train(cfg, progress=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

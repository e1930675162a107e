"""``python -m udic.train``: train (or resume) a model; see TrainConfig for options."""

from __future__ import annotations

import os
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
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A torchrun rank leaves without interpreter finalisation: gloo's worker threads can still
        # hold work objects then, and tearing them down aborted a rank that had finished
        # ("terminate called without an active exception", twice in CI-like runs; pytorch#179291).
        # Everything is written and closed by now; the process group was destroyed in train().
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise SystemExit(code)

"""What every benchmark section shares: running the CLI in a child, writing its section."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# The checkout that holds ``tools/``: children started with ``python -m tools.…`` run here.
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ChildRun:
    """One ``udic`` command in its own process: exit code, wall time, peak memory."""

    returncode: int
    seconds: float
    peak_rss_mb: float
    stderr: str


def run_udic(args: list[str]) -> ChildRun:
    """Run ``python -m udic ARGS`` and measure it (peak RSS from wait4, in MB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "udic", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    return ChildRun(os.waitstatus_to_exitcode(status), time.perf_counter() - t0, usage.ru_maxrss / 1024, err)


def command_line(argv: list[str] | None, module: str) -> str:
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python -m", module, *map(shlex.quote, args)])


def write_section(out: Path, name: str, data: dict, markdown: str) -> Path:
    sections = out / "sections"
    sections.mkdir(parents=True, exist_ok=True)
    (sections / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    path = sections / f"{name}.md"
    path.write_text(markdown.rstrip() + "\n")
    return path


def publish(out: Path, name: str, data: dict, markdown: str) -> int:
    """Write the section and show it; a benchmark's exit code (0)."""
    write_section(out, name, data, markdown)
    print(markdown)
    return 0

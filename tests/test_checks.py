"""udic.checks: the checks that run before any work."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

import pytest

from udic import checks
from udic.errors import OutputError


def test_an_output_folder_that_refuses_files_is_found_before_any_work(tmp_path: Path, monkeypatch) -> None:
    """Permission bits pass (root passes them all, /proc has them), the file system says no:
    the probe file tells before an encode is spent, naming the output."""

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OutputError, match=f"^cannot write {tmp_path / 'a.udic'}: Read-only file system$"):
        checks.check_output(str(tmp_path / "a.udic"), force=False)


def test_the_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    checks.check_output(str(tmp_path / "a.udic"), force=False)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "a.udic").write_bytes(b"x")
    with pytest.raises(OutputError, match="exists \\(use --force to overwrite\\)$"):
        checks.check_output(str(tmp_path / "a.udic"), force=False)
    checks.check_output(str(tmp_path / "a.udic"), force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["a.udic"]

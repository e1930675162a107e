"""Argument and file checks that run before any work, in milliseconds.

Why a module of its own: a user who mistypes ``-q 90`` or names a missing file should
hear about it at once, not after torch has been imported and a model loaded (seconds
on a loaded machine), nor after a whole encode.  Everything here uses the standard
library only; the one check that needs torch (is CUDA usable?) runs last, and only
when ``--device cuda`` was asked for.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

from .errors import InputError, OutputError, UsageError

STDIO = "-"

# Output suffixes ``udic decode`` writes, by Pillow format name (imageio writes exactly these;
# tests/test_imageio.py checks the two tables agree).  Kept here so that checking ``-o k.gif``
# needs no Pillow import.
OUTPUT_FORMATS: dict[str, str] = {
    ".png": "PNG", ".apng": "PNG",
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF", ".tiff": "TIFF",
    ".ppm": "PPM", ".pgm": "PPM", ".pnm": "PPM", ".pbm": "PPM",
}  # fmt: skip
FORMAT_NAMES = {"PNG", "JPEG", "JPG", "WEBP", "BMP", "TIFF", "TIF", "PPM", "PGM", "PNM", "PBM"}
# Formats that keep an alpha channel when read back (Pillow reads a 32-bit BMP as RGB).
ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})
UDIC_SUFFIX = ".udic"


def display_name(src: str) -> str:
    return "<stdin>" if src == STDIO else src


def input_error(exc: OSError) -> InputError:
    """The one-line error for an input that could not be opened or read."""
    if isinstance(exc, FileNotFoundError):
        return InputError("no such file")
    if isinstance(exc, PermissionError):
        return InputError("permission denied")
    return InputError(f"cannot read ({exc.strerror})")


def check_input(src: str) -> None:
    """The input exists, is a readable file and is not empty (``-`` is stdin: read later)."""
    if src == STDIO:
        return
    try:
        st = os.stat(src)
    except OSError as exc:
        raise input_error(exc) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError("is a directory")
    if not os.access(src, os.R_OK):
        raise InputError("permission denied")
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:  # a pipe or device may still have bytes
        raise InputError("empty file")


def output_format(dest: str, fmt: str | None) -> str:
    """The Pillow format an image output will be written in; refuses what udic cannot write."""
    if fmt:
        name = fmt.upper().lstrip(".")
        if name not in FORMAT_NAMES:
            raise UsageError(f"--format {fmt}: unsupported output format (use one of "
                             f"{', '.join(sorted({'PNG', 'JPEG', 'WEBP', 'BMP', 'TIFF', 'PPM'}))})")
        chosen = OUTPUT_FORMATS.get("." + name.lower(), name)
        suffix = "" if dest == STDIO else Path(dest).suffix.lower()
        if suffix in OUTPUT_FORMATS and OUTPUT_FORMATS[suffix] != chosen:
            # PNG bytes under .jpg: every viewer that trusts the name would misread the file
            raise UsageError(f"--format {fmt} disagrees with -o {dest} (its suffix names {OUTPUT_FORMATS[suffix]})")
        return chosen
    if dest == STDIO:
        return "PNG"
    suffix = Path(dest).suffix.lower()
    if suffix == UDIC_SUFFIX:
        raise UsageError(f"-o {dest}: decode writes images, not .udic files (use png, jpg, webp, ...)")
    if suffix not in OUTPUT_FORMATS:
        shown = f"suffix {suffix!r}" if suffix else "no suffix"
        raise UsageError(f"-o {dest}: {shown} is not an image format udic writes "
                         f"({', '.join(sorted({s for s in OUTPUT_FORMATS if len(s) <= 5}))})")
    return OUTPUT_FORMATS[suffix]


def check_encode_output(dest: str) -> None:
    """An encode writes .udic bytes: never under an image suffix (``-o out.png``)."""
    if dest == STDIO:
        return
    suffix = Path(dest).suffix.lower()
    if suffix in OUTPUT_FORMATS or suffix in (".gif", ".avif", ".jxl", ".heic", ".bpg"):
        raise UsageError(f"-o {dest}: encode writes .udic files, not {suffix[1:]} images (use a .udic name)")


def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def check_output(dest: str, force: bool, src: str | None = None, folder_planned: bool = False) -> None:
    """The output can be created: its folder exists (or is ``folder_planned``: checked by
    ``check_output_dir`` and made just before writing), it is not a folder, it does not
    exist (unless ``force``), and it is not the input itself (not even with ``force``)."""
    if dest == STDIO:
        return
    if src is not None and src != STDIO and same_file(src, dest):
        raise OutputError(f"{dest} is the input file: refusing to overwrite it, even with --force")
    parent = Path(dest).parent
    if not parent.is_dir():
        if folder_planned:
            return
        raise OutputError(f"output directory {parent} does not exist")
    if os.path.isdir(dest):
        raise OutputError(f"{dest} is a directory")
    if not force and os.path.lexists(dest):
        raise OutputError(f"{dest} exists (use --force to overwrite)")
    from .imageio import is_special_file

    if is_special_file(dest):  # written into, not replaced (imageio.atomic_write_bytes)
        if not os.access(dest, os.W_OK):
            raise OutputError(f"cannot write {dest} (permission denied)")
        return
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {dest} (permission denied)")
    _probe_folder(parent, dest)


def _probe_folder(parent: Path, dest: str) -> None:
    """Create and remove a file beside the output, as the atomic write will: permission bits
    do not tell of a read-only file system or a folder like /proc (and root passes every
    ``os.access``), which would otherwise fail only after the whole encode."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".udic-probe-")
    except OSError as exc:
        raise OutputError(f"cannot write {dest}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass


def check_binary_stdout(dest: str, force: bool, stream=None) -> None:  # noqa: ANN001 - a text stream
    """Binary data is not for a terminal (as gzip and cjxl refuse), unless forced."""
    if dest != STDIO or force:
        return
    out = stream if stream is not None else sys.stdout
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):
        tty = False
    if tty:
        raise UsageError("refusing to write binary data to a terminal (redirect stdout, or use --force)")


def cuda_may_exist() -> bool:
    """A cheap hint (no torch): an NVIDIA driver or tool is present."""
    return os.path.exists("/proc/driver/nvidia") or shutil.which("nvidia-smi") is not None


def check_device(device: str) -> None:
    """``--device cuda`` needs a CUDA device: a driver hint first, then torch (already needed)."""
    if device != "cuda":
        return
    if not cuda_may_exist():
        raise UsageError("--device cuda: no NVIDIA driver found (use --device cpu or auto)")
    import torch

    if not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available to torch (use --device cpu or auto)")


def check_quality(quality: float, model: str | None) -> float | None:
    """``-q`` against the model's number of rates, read from its weights header (no torch).

    Returns the model's highest quality, or None when the weights are not on disk yet
    (to be downloaded): then the codec checks the range once it has loaded.
    """
    from . import hub, modes

    top = hub.max_quality(model)
    if top is not None and not 0 <= quality <= modes.max_quality(top):
        raise UsageError(f"-q {quality:g} is out of range 0…{modes.max_quality(top):g} "
                         f"(0…{top:g} learned, then near-lossless and lossless)")
    return top


TILE_UNIT = 64  # the header's tile unit (bitstream_spec.md §2); geometry.py holds the same
MAX_TILE = 255 * TILE_UNIT


def check_tile(tile: int | None) -> None:
    """``--tile`` is 0 or a multiple of the header's unit that the header can store."""
    if tile is not None and (tile < 0 or tile % TILE_UNIT or tile > MAX_TILE):
        raise UsageError(f"tile size must be 0 or a multiple of {TILE_UNIT} up to {MAX_TILE}, got {tile}")


def check_output_dir(path: str) -> None:
    """A folder for several outputs: it exists, or it can be created (its nearest existing
    ancestor is a writable folder).  Nothing is created here."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise UsageError(f"-o {path}: several inputs need -o DIR, and this is a file")
        return
    ancestor = p.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"-o {path}: cannot create the folder ({ancestor} is not a folder)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"-o {path}: cannot create the folder in {ancestor} (permission denied)")

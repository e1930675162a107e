"""tools.device_check: the cross-device exactness check a session with a GPU runs, rehearsed on
the CPU with the tiny model (where both "devices" are the CPU, so everything must match)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from tools import device_check


def test_prepare_run_and_verify_on_the_cpu(tiny_cache, tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "data"
    (data / "kodak").mkdir(parents=True)
    (data / "ood" / "comic").mkdir(parents=True)
    yy, xx = np.mgrid[0:72, 0:136]
    rgb = np.stack([xx, yy * 3, (xx + yy)], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(data / "kodak" / "k.png")
    Image.fromarray(255 - rgb).save(data / "ood" / "comic" / "c.png")
    monkeypatch.setattr(device_check, "CHECK", tmp_path / "check")
    monkeypatch.setattr(device_check, "_models", lambda: {"default": tiny_cache.id, "hifi": tiny_cache.id})
    monkeypatch.setattr(device_check, "CASES", (
        ("kodak/k.png", None, "default", 3.0, 0, None),
        ("ood/comic/{comic}", (0, 0, 32, 32), "hifi", 4.5, 1, None),
        ("kodak/k.png", None, "default", 2.0, 0, 64),  # tiled
    ))
    assert device_check.main(["prepare", "--data", str(data)]) == 0
    cases = json.loads((tmp_path / "check" / "cases.json").read_text())
    assert len(cases) == 3 and all((tmp_path / "check" / c["file"]).exists() for c in cases)
    assert [p.name for p in (tmp_path / "check" / "weights").iterdir()] == [tiny_cache.path.name]
    out = tmp_path / "out"
    assert device_check.main(["run", "--out", str(out), "--device", "cpu"]) == 0
    report = json.loads((out / "device_check.json").read_text())
    assert report["failures"] == 0
    for row in report["cases"]:
        assert row["decoded"] and row["repeatable"] and row["same_pixels_as_cpu"] and row["same_file_as_cpu"]
    assert device_check.main(["verify", str(out)]) == 0
    # a device file that no longer decodes is a failure, named
    (out / "dev1.udic").write_bytes((out / "dev1.udic").read_bytes()[:-3])
    assert device_check.main(["verify", str(out)]) == 1

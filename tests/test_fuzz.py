"""Container fuzzing and decompression bombs (the mutation engine is ``tools.fuzz``).

Valid files made with the tiny model (several qualities, with and without alpha, ICC and
adapters) are mutated — bit flips, byte sets, truncation, insertion, splicing, appended
garbage, and structure-aware edits behind a *recomputed* CRC trailer so the parser and
the entropy decoders really see the damage.  Every case must end in a ``UdicError`` or in
an image of the header's size, within 10 s.  ``make fuzz`` runs the long campaign.
"""

from __future__ import annotations


import json
import random
import struct
import subprocess
import tracemalloc
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import UDIC, TinyModel, png_bytes, smooth_image
from udic import api
from udic import container as ctr
from udic.cli import main
from udic.codec import Codec
from udic.errors import ContainerError, UdicError
from tools import fuzz
from tools.fuzz import Case, RawFile, reseal





@pytest.fixture(scope="module")
def seeds(tiny_codec: Codec) -> list[fuzz.Seed]:
    return fuzz.make_seeds(tiny_codec)


@pytest.fixture
def decode(tiny_cache: TinyModel):
    """The public decoder; the model is found by the id in each file's header."""
    return fuzz.api_decoder()


def seed_named(seeds: list[fuzz.Seed], name: str) -> fuzz.Seed:
    return next(s for s in seeds if s.name == name)


def assert_clean(outcome: fuzz.Outcome, case: str = "") -> None:
    assert not outcome.bad, f"{outcome.kind}: {outcome.detail}\n{case}\n{outcome.trace}"


# ---- the seeds themselves ------------------------------------------------------------------


def test_seeds_cover_every_section_and_decode_exactly(seeds: list[fuzz.Seed], decode) -> None:
    present = set()
    for seed in seeds:
        present |= set(ctr.parse(seed.data).sections)
        assert fuzz.check(seed.data, decode, seeds).kind == "exact", seed.name
    assert present == set(ctr.Section)
    qualities = {ctr.parse(s.data).header.rate for s in seeds}
    assert len(qualities) >= 5  # including fractional rates and both ends


def test_pixel_seeds_cover_every_lossless_mode(seeds: list[fuzz.Seed]) -> None:
    """The pixel-coded seeds reach each lossless payload mode, the palette coded as a list and in
    context, the literal cache, fresh literals, literals by the colour above and long matches."""
    from udic import lossless
    from udic.lossless import adaptive

    infos = [lossless.describe(ctr.parse(s.data).sections[ctr.Section.PIXELS]) for s in seeds if s.name.startswith("pixels-")]
    assert {info["mode"] for info in infos} == set(lossless.MODE_NAMES.values())
    assert any(info.get("palette_coded") for info in infos) and any(info.get("literal_cache") for info in infos)
    assert any(info.get("fresh_literals") for info in infos) and any(info.get("long_matches") for info in infos)
    assert any(info.get("bands", 1) > 1 for info in infos)
    assert any(info.get("palette_in_context") for info in infos) and any(info.get("literals_above") for info in infos)
    assert any(info.get("palette_coded") and not info.get("palette_in_context") for info in infos)
    versions = {ctr.parse(s.data).sections[ctr.Section.PIXELS][0] for s in seeds if s.name.startswith("pixels-")}
    assert versions == {lossless.VERSION, adaptive.RATES_VERSION - 1}  # the current rates and the older ones
    assert any(info.get("transform") == "gray (R = G = B)" for info in infos)  # version 12: one plane for RGB


def test_rawfile_round_trip(seeds: list[fuzz.Seed]) -> None:
    for seed in seeds:
        assert RawFile.parse(seed.data).to_bytes() == seed.data


# ---- hypothesis: arbitrary mutation sequences ------------------------------------------------

positions = st.integers(0, 1 << 16)
chunks = st.binary(min_size=1, max_size=16)
values = st.one_of(st.sampled_from(fuzz.INTERESTING), st.integers(0, (1 << 32) - 1))
u16 = st.one_of(st.sampled_from(fuzz.U16_EXTREMES), st.integers(0, 0xFFFF))
sec = st.integers(0, 7)

structured_ops = st.one_of(
    st.tuples(st.just("field"), st.integers(0, 7), values),
    st.tuples(st.just("count"), st.integers(0, 300)),
    st.tuples(st.just("sec_add"), st.integers(0, 255), st.integers(0, 64), st.integers(0, 1 << 30)),
    st.tuples(st.just("sec_flip"), sec, positions, st.integers(0, 7)),
    st.tuples(st.just("sec_set"), sec, positions, st.integers(0, 255)),
    st.tuples(st.just("sec_word"), sec, positions, st.integers(0, (1 << 32) - 1)),
    st.tuples(st.just("sec_trunc"), sec, positions),
    st.tuples(st.just("sec_insert"), sec, positions, chunks),
    st.tuples(st.just("sec_extend"), sec, chunks),
    st.tuples(st.just("sec_random"), sec, st.integers(0, 256), st.integers(0, 1 << 30)),
    st.tuples(st.sampled_from(["sec_zero", "sec_drop", "sec_dup"]), sec),
    st.tuples(st.just("sec_from"), sec, st.integers(0, 63)),
    st.tuples(st.just("sec_tag"), sec, st.integers(0, 255)),
    st.tuples(st.just("sec_len"), sec, st.one_of(st.integers(-16, 16), st.sampled_from([1 << 20, 1 << 34]))),
    st.tuples(st.just("sec_swap"), sec, sec),
    st.tuples(st.just("adapters_hdr"), st.integers(0, 4), values),
    st.tuples(st.just("adapters_hdr"), st.just("params"), u16, u16),
    st.tuples(st.just("alpha_hdr"), st.integers(0, 8), values),
    st.tuples(st.just("icc_data"), st.integers(0, 4095), st.integers(0, 1 << 30)),
)
raw_ops = st.one_of(
    st.tuples(st.just("flip"), positions, st.integers(0, 7)),
    st.tuples(st.just("set"), positions, st.integers(0, 255)),
    st.tuples(st.just("trunc"), positions),
    st.tuples(st.just("insert"), positions, chunks),
    st.tuples(st.just("delete"), positions, st.integers(0, 15)),
    st.tuples(st.just("append"), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("splice"), st.integers(0, 63), positions, positions),
    st.just(("reseal",)),
)
cases = st.builds(
    Case,
    seed=st.integers(0, 9),
    structured=st.lists(structured_ops, max_size=3),
    raw=st.lists(raw_ops, max_size=3),
)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases)
def test_mutated_files_fail_cleanly_or_decode(seeds: list[fuzz.Seed], decode, case: Case) -> None:
    data = case.build(seeds)
    assert_clean(fuzz.check(data, decode, seeds, timeout=fuzz.DEFAULT_TIMEOUT), case.describe(seeds))


# ---- systematic damage behind a valid trailer --------------------------------------------------


def test_every_truncation_resealed(seeds: list[fuzz.Seed], decode) -> None:
    seed = seed_named(seeds, "all-20x30-q3.5")  # every section type
    for cut in range(len(ctr.MAGIC) + 1, len(seed.data) - 4):
        outcome = fuzz.check(reseal(seed.data[:cut] + b"\0" * 4), decode, seeds)
        assert outcome.kind == "error", (cut, outcome)


def test_every_byte_inverted_resealed(seeds: list[fuzz.Seed], decode) -> None:
    """Each byte of a file with every section, inverted, with a correct trailer."""
    seed = seed_named(seeds, "all-20x30-q3.5")
    kinds = set()
    for pos in range(len(seed.data) - 4):
        bad = bytearray(seed.data)
        bad[pos] ^= 0xFF
        data = reseal(bytes(bad))
        outcome = fuzz.check(data, decode, seeds)
        assert_clean(outcome, f"byte {pos}")
        kinds.add(outcome.kind)
    assert "error" in kinds


def test_splices_resealed(seeds: list[fuzz.Seed], decode) -> None:
    """Head of one file, tail of another, cut at section boundaries and mid-payload."""
    for a in seeds:
        for b in seeds:
            if a is b:
                continue
            for frac in (0.3, 0.5, 0.8):
                cut_a, cut_b = int(len(a.data) * frac), int(len(b.data) * frac)
                data = reseal(a.data[:cut_a] + b.data[cut_b:])
                assert_clean(fuzz.check(data, decode, seeds), f"{a.name} + {b.name} at {frac}")


def test_sections_from_other_files(seeds: list[fuzz.Seed], decode) -> None:
    """Every section replaced by the same section of every other file: latent checksum or exact."""
    for i, seed in enumerate(seeds):
        n = len(RawFile.parse(seed.data).sections)
        for s in range(n):
            for other in range(len(seeds)):
                case = Case(seed=i, structured=[("sec_from", s, other)])
                assert_clean(fuzz.check(case.build(seeds), decode, seeds), case.describe(seeds))


def test_appended_and_inserted_garbage_resealed(seeds: list[fuzz.Seed], decode) -> None:
    seed = seed_named(seeds, "rgb-40x56-q3")
    for extra in (b"\0", b"\xff" * 4, b"UDIC" + seed.data):
        outcome = fuzz.check(reseal(seed.data[:-4] + extra + b"\0" * 4), decode, seeds)
        assert outcome.kind == "error" and "after the last section" in outcome.detail
        outcome = fuzz.check(seed.data + extra, decode, seeds)  # trailer no longer last
        assert outcome.kind == "error" and "damaged" in outcome.detail


def test_timeout_guard_stops_a_hang(seeds: list[fuzz.Seed]) -> None:
    def forever(data: bytes) -> None:
        while True:
            pass

    outcome = fuzz.check(seeds[0].data, forever, seeds, timeout=0.3)
    assert outcome.kind == "hang" and outcome.bad


def test_oracle_flags_foreign_exceptions(seeds: list[fuzz.Seed]) -> None:
    def broken(data: bytes) -> None:
        raise IndexError("boom")

    outcome = fuzz.check(seeds[0].data, broken, seeds)
    assert outcome.kind == "crash" and "IndexError" in outcome.detail


def test_small_campaign_is_clean_and_replayable(seeds: list[fuzz.Seed], decode, capsys) -> None:
    report = fuzz.campaign(120, seeds, decode, seed=5)
    assert report.cases == 120
    assert sum(report.kinds.values()) == 120
    assert report.sealed > 60  # most cases get past the trailer check
    assert report.failures == []
    text = "\n".join(report.lines(5, 10))
    assert "clean errors" in text and "crashes" in text
    json.dumps(report.to_dict())
    again = fuzz.campaign(120, seeds, decode, seed=5, only=7)
    assert again.cases == 1
    assert "seed " in capsys.readouterr().out


# ---- open bugs, pinned -------------------------------------------------------------------------


def with_adapter_params(seeds: list[fuzz.Seed], step_q: int, scale_q: int) -> bytes:
    seed = seeds.index(seed_named(seeds, "adapters-24x24-q2"))
    return Case(seed=seed, structured=[("adapters_hdr", "params", step_q, scale_q)]).build(seeds)


def test_adapter_step_scale_overflow(seeds: list[fuzz.Seed], decode) -> None:
    for step_q, scale_q in ((65535, 1), (65535, 46)):
        outcome = fuzz.check(with_adapter_params(seeds, step_q, scale_q), decode, seeds)
        assert outcome.kind == "error", outcome.detail


def test_adapter_huge_table_refused_quickly(seeds: list[fuzz.Seed], decode) -> None:
    outcome = fuzz.check(with_adapter_params(seeds, 1, 65535), decode, seeds, timeout=2.0)
    assert outcome.kind == "error", outcome.detail


def test_icc_zlib_bomb_refused_before_allocation(seeds: list[fuzz.Seed], decode) -> None:
    rf = RawFile.parse(seed_named(seeds, "icc-16x20-q3").data)
    bomb = zlib.compress(b"\0" * (256 << 20), 9)
    assert len(bomb) < 300_000
    rf.sections = [[t, bomb if t == ctr.Section.ICC else p, d] for t, p, d in rf.sections]
    data = rf.to_bytes()
    decode(seed_named(seeds, "rgb-16x16-q0").data)  # load the model outside the measurement
    tracemalloc.start()
    try:
        with pytest.raises(ContainerError):
            decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20  # room for a limit of ~16 MiB, never the whole 256 MiB


# ---- decompression bombs -------------------------------------------------------------------------


def claiming(data: bytes, width: int, height: int) -> bytes:
    rf = RawFile.parse(data)
    rf.fields["width"], rf.fields["height"] = width, height
    return rf.to_bytes()


def peak_of(fn) -> tuple[BaseException | None, int]:
    tracemalloc.start()
    try:
        try:
            fn()
            error = None
        except BaseException as exc:  # noqa: BLE001 - returned to the caller
            error = exc
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return error, peak


@pytest.mark.parametrize("size", [(100_000, 100_000), (8193, 8192), (1 << 20, 65)])
def test_huge_header_refused_before_allocation(seeds: list[fuzz.Seed], tiny_codec: Codec, decode, size) -> None:
    data = claiming(seed_named(seeds, "rgb-16x16-q0").data, *size)
    decode(seeds[1].data)  # load the model outside the measurement
    for fn in (lambda: decode(data), lambda: tiny_codec.decode(data)):
        error, peak = peak_of(fn)
        assert isinstance(error, ContainerError) and "--allow-large" in str(error), error
        assert peak < 1 << 20, peak


def test_section_length_past_the_end_refused_before_allocation(seeds: list[fuzz.Seed], decode) -> None:
    for claimed in (1 << 20, 1 << 34):
        rf = RawFile.parse(seed_named(seeds, "rgb-40x56-q3").data)
        rf.sections[1][2] = claimed
        data = rf.to_bytes()
        error, peak = peak_of(lambda: decode(data))
        assert isinstance(error, ContainerError) and "past the end" in str(error), error
        assert peak < 1 << 20, peak


def test_cli_refuses_bomb_headers(seeds: list[fuzz.Seed], tiny_cache: TinyModel, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.udic"
    bomb.write_bytes(claiming(seed_named(seeds, "rgb-16x16-q0").data, 100_000, 100_000))
    runner = CliRunner()
    error, peak = peak_of(lambda: runner.invoke(main, ["decode", str(bomb), "-o", str(tmp_path / "x.png")]))
    assert error is None
    result = runner.invoke(main, ["decode", str(bomb), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1
    assert f"udic: {bomb}: " in result.stderr and "--allow-large" in result.stderr
    assert not (tmp_path / "x.png").exists()
    info = runner.invoke(main, ["info", str(bomb), "--json"])  # describing it allocates nothing
    assert info.exit_code == 0 and json.loads(info.stdout)["width"] == 100_000
    assert peak < 8 << 20, peak


def test_encode_pixel_limit_needs_allow_large(tiny_cache: TinyModel, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from udic import imageio

    (tmp_path / "a.png").write_bytes(png_bytes(smooth_image(20, 30, seed=3)))
    monkeypatch.setattr(imageio.load_image, "__kwdefaults__", {"allow_large": False, "max_pixels": 599})
    runner = CliRunner()
    args = ["encode", str(tmp_path / "a.png"), "--model", tiny_cache.id, "--effort", "0"]
    result = runner.invoke(main, args)
    assert result.exit_code == 1 and "--allow-large" in result.stderr
    assert not (tmp_path / "a.udic").exists()
    result = runner.invoke(main, [*args, "--allow-large"])
    assert result.exit_code == 0, result.output
    assert ctr.parse((tmp_path / "a.udic").read_bytes()).header.width == 30


def test_encode_png_bomb_header_refused_before_allocation(tiny_cache: TinyModel, tmp_path: Path) -> None:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(png)
    runner = CliRunner()
    api.get_codec(tiny_cache.id, progress=False)  # model loading is not part of the measurement
    holder = {}
    error, peak = peak_of(lambda: holder.setdefault("r", runner.invoke(
        main, ["encode", str(tmp_path / "bomb.png"), "--model", tiny_cache.id, "--effort", "0"])))
    result = holder["r"]
    assert result.exit_code == 1 and "--allow-large" in result.stderr and "100000x100000" in result.stderr
    assert peak < 8 << 20, peak
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.png"]


# ---- the real executable on damaged files ----------------------------------------------------------


def test_cli_batch_of_damaged_files_no_traceback(seeds: list[fuzz.Seed], decode, tiny_env: dict[str, str],
                                                 tmp_path: Path) -> None:
    """30 damaged files and 2 good ones through `udic decode --jobs 2`: one line per bad file,
    outputs exactly for the files that decode, no partial or temp files, no traceback."""
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = random.Random(11)
    files = []
    while len(files) < 30:
        case = fuzz.random_case(rng, len(seeds))
        data = case.build(seeds)
        path = src / f"f{len(files):02d}.udic"
        path.write_bytes(data)
        files.append(path)
    for name in ("good1", "good2"):
        path = src / f"{name}.udic"
        path.write_bytes(seeds[len(files) % 3].data)
        files.append(path)

    expected_ok = set()
    for path in files:
        outcome = fuzz.check(path.read_bytes(), decode, seeds)
        assert_clean(outcome, path.name)
        if outcome.kind != "error":
            expected_ok.add(path.stem)
    assert 2 <= len(expected_ok) < len(files)

    proc = subprocess.run([str(UDIC), "decode", *map(str, files), "-o", str(out), "--jobs", "2"],
                          capture_output=True, env=tiny_env, cwd=tmp_path, timeout=600)
    stderr = proc.stderr.decode()
    assert "Traceback" not in stderr and "unexpected error" not in stderr, stderr
    assert proc.returncode == 1
    assert {p.stem for p in out.iterdir()} == expected_ok
    assert all(p.suffix == ".png" and not p.name.startswith(".") for p in out.iterdir())
    lines = [line for line in stderr.splitlines() if line.startswith("udic: ") and ".udic: " in line]
    failed = [p for p in files if p.stem not in expected_ok]
    assert [line.split(": ")[1] for line in lines] == [str(p) for p in failed]  # in input order
    assert stderr.rstrip().splitlines()[-1] == (
        f"udic: {len(expected_ok)} of {len(files)} files decoded, {len(failed)} failed")


def test_inflated_headers_are_refused_within_the_budget(seeds: list[fuzz.Seed], decode) -> None:
    """Issue 15: a small valid file resealed with a huge width × height is refused within
    1 s and 200 MB (learned and pixel-coded seeds alike)."""
    report = fuzz.inflation_campaign(seeds, decode)
    assert report.cases >= len(seeds) * len(fuzz.INFLATED_SIZES)
    assert report.bad == 0, report.failures[:3]
    assert report.kinds["error"] == report.cases  # every one refused, none decoded


def test_the_inflation_check_flags_a_slow_refusal(seeds: list[fuzz.Seed]) -> None:
    def slow(data: bytes):
        import time

        from udic.errors import ContainerError

        time.sleep(fuzz.INFLATION_SECONDS * 1.2)
        raise ContainerError("too big")

    assert fuzz.check_inflation(seeds[0].data, slow).kind == "bloat"

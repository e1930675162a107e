"""Which representation an image gets: the learned codec, near-lossless or lossless.

Why this exists: the learned transform has a fidelity ceiling and, on synthetic
content, can cost more than the pixels.  So the quality scale continues past the
model's top rate into the pixel coder (``PIXEL_LADDER``), a PSNR target above what the
network reaches is met by the pixel coder, and at the default effort a lossy request
is answered with a pixel-coded file whenever that file is no larger *and* no worse —
so a lossy udic file is never larger than udic's own lossless file of the image.
Nothing here imports torch: a pixel-only encode never loads a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy and the pixel coder load on first use: `-q` checks stay cheap
    import numpy as np

    from . import pixelcodec
    from .imageio import LoadedImage

# max_error at qualities top+1 … top+4 (0 = lossless).  PSNR (8-bit, uniform error):
# ±4 ≈ 40 dB, ±2 ≈ 45 dB, ±1 ≈ 50 dB, then exact.
PIXEL_LADDER: tuple[int, ...] = (4, 2, 1, 0)
# Near-lossless tolerances the mode choice and PSNR targets choose from.  ±16 and ±32 reach
# 38–46 and 34–40 dB on flat art, where merging colours (lossless.transforms.reduce_colours)
# keeps the flat regions exact; on photos they are never chosen (the learned file is better).
# Steps about 1.25x apart in 1 + N: with only the doublings a 42 dB target on vector art took
# ±4 at 44.6 dB where ±6 gives 42.2 dB in 0.82x the bytes (pdv_digital-background-2).
NEAR_LOSSLESS_CANDIDATES: tuple[int, ...] = (32, 24, 16, 12, 10, 8, 6, 5, 4, 3, 2, 1)
# The mode choice tries near-lossless only where it can plausibly win: when the lossless
# file is within this factor of the lossy one.  Photos at low rates are 30-100x apart and
# are skipped; flat gradient art (debian_emerald: lossless 16x its lowest-rate learned file)
# fits at ±32.  The bisection's first probe, the loosest step, stops the rest.
NEAR_LOSSLESS_REACH = 20.0
# Below -q 1 (the network's smallest rate) a request asks for the smallest file: the choice
# answers with the smallest pixel-coded file that is no larger and no worse than the learned
# one, from a ladder that reaches further (merging colours within ±48 and ±64 still leaves a
# comic's flat regions exact at ~34-39 dB, where the network's smallest file is 22-25 dB).
SMALLEST_BELOW = 1.0
SMALLEST_CANDIDATES: tuple[int, ...] = (64, 48, 32, 16, 8, 4, 2, 1)
# A PSNR target is met by the smallest file that reaches it, from the whole range (at 30 dB a
# vector castle's ±32 file is 35.6 dB), with ±20 and ±40 between the loose steps: PSNR falls
# fast there (the castle: ±16 42.5 dB in 15,964 B, ±20 38.5 dB in 14,377 B, ±24 36.8 dB), so a
# 38 dB target took ±16, 11 % over ±20.
TARGET_CANDIDATES: tuple[int, ...] = tuple(sorted(set(NEAR_LOSSLESS_CANDIDATES + SMALLEST_CANDIDATES + (20, 40)),
                                                  reverse=True))
# PSNR targets also try merging only the rare colours (lossless.encode_popular), loosest first:
# the flat colours stay exact, so PSNR stays high at tolerances where the plain merge joins flat
# colours too (gnome_blobs: ±32 at 53 dB in 1,255 B, under the learned 42 dB file's 2,329 B).
POPULAR_CANDIDATES: tuple[int, ...] = (64, 32, 16)
MIN_CHOICE_EFFORT = 1  # effort 0 is the plain learned encode, nothing else tried
# Pixel-coded files the mode choice may encode: the exact one and up to 4 ladder probes (the
# progress line's scale; a search that stops early just ends the line sooner).
PLANNED_ENCODES = 5
OnStep = Callable[[str, int, int, float], None]  # (phase, step, total, cost): as adapt's progress


def max_quality(lossy_top: float) -> float:
    """The top of the ``-q`` scale: the model's rates, then the pixel ladder."""
    return lossy_top + len(PIXEL_LADDER)


def pixel_max_error(quality: float, lossy_top: float) -> int | None:
    """The pixel coder's tolerance for a quality above the model's top, else None."""
    if quality <= lossy_top + 1e-9:
        return None
    step = min(max(math.ceil(quality - lossy_top - 1e-9), 1), len(PIXEL_LADDER))
    return PIXEL_LADDER[step - 1]


def exact_samples(image: LoadedImage) -> tuple[np.ndarray, int]:
    """The source's samples as the pixel coder takes them: (H, W, C), C = 1 gray, 2 gray +
    alpha, 3 RGB, 4 RGBA, at the source's bit depth (16-bit PNGs keep their 16 bits)."""
    import numpy as np

    if image.wide is not None:
        return image.wide, sample_depth(image)
    colour = image.rgb[..., :1] if image.mode == "L" else image.rgb
    planes = [colour] if image.alpha is None else [colour, image.alpha[..., None]]
    return np.ascontiguousarray(np.concatenate(planes, axis=2)), 8


def sample_depth(image: LoadedImage) -> int:
    """Bits per sample the pixel coder keeps: the source's for 16-bit PNGs, else 8."""
    return image.bit_depth if image.wide is not None else 8


def ladder_error(image: LoadedImage, max_error_8bit: int) -> int:
    """A ladder step (in 8-bit units, as ``-q`` means it) in the source's sample units."""
    depth = sample_depth(image)
    return max_error_8bit << (depth - 8) if depth > 8 else max_error_8bit


def encode_pixels(image: LoadedImage, max_error: int, effort: int = 1,
                  note: str | None = None) -> pixelcodec.PixelEncoded:
    """A pixel-coded file of ``image``; the source's notices travel with the result."""
    from . import pixelcodec

    samples, depth = exact_samples(image)
    enc = pixelcodec.encode_file(samples, depth, max_error, effort, icc=image.icc, metadata=image.metadata,
                                 note=note)
    enc.notices = [n for n in image.notices if not (depth > 8 and "16-bit" in n)]
    return enc


class Candidate:
    """A finished file and its PSNR, measured only if a decision needs it."""

    def __init__(self, result: object, psnr: float | None = None,
                 measure: Callable[[], float] | None = None, tolerance: int | None = None) -> None:
        self.result = result  # a learned EncodeResult or a pixelcodec.PixelEncoded
        self.tolerance = tolerance  # a near-lossless file's ±N as asked of the coder, in sample units
        # A PSNR the encoder already knows travels on the result: no decode to measure it.
        self._psnr = psnr if psnr is not None else getattr(result, "psnr", None)
        self._measure = measure
        self._record()

    @property
    def psnr(self) -> float:
        if self._psnr is None:
            assert self._measure is not None
            self._psnr = self._measure()
            self._record()
        return self._psnr

    def _record(self) -> None:
        """A PSNR once known travels with the file, so the report need not decode it again."""
        if self._psnr is not None and hasattr(self.result, "psnr"):
            self.result.psnr = self._psnr  # type: ignore[attr-defined]

    @property
    def size(self) -> int:
        return len(self.result.data)  # type: ignore[attr-defined]


def _pixel_candidate(image: LoadedImage, max_error: int, effort: int) -> Candidate:
    """A pixel-coded candidate without a note; ``max_error`` in 8-bit steps (scaled for
    16-bit sources)."""
    max_error = ladder_error(image, max_error)
    enc = encode_pixels(image, max_error, effort)
    return Candidate(enc, enc.psnr, tolerance=max_error)  # colour PSNR on the scale lossy PSNRs use


def _popular_candidate(image: LoadedImage, max_error: int, effort: int) -> Candidate | None:
    """A file with only the rare colours merged within ±max_error (8-bit steps), or None where
    that coding does not apply (too many colours, a 16-bit source)."""
    from . import pixelcodec

    samples, depth = exact_samples(image)
    if depth != 8:
        return None
    enc = pixelcodec.encode_file_popular(samples, depth, max_error, effort, icc=image.icc, metadata=image.metadata)
    if enc is None:
        return None
    enc.notices = list(image.notices)
    return Candidate(enc, enc.psnr)


def _smallest_popular(image: LoadedImage, effort: int, floor_db: float, below: int,
                      encodes: _Encodes) -> tuple[int, Candidate] | None:
    """The loosest POPULAR_CANDIDATES step whose file reaches ``floor_db`` and is under
    ``below`` bytes, with its tolerance; looser steps are smaller, so the search stops at the
    first step that reaches the floor (and at the first that does not apply or is too large)."""
    for step in POPULAR_CANDIDATES:
        cand = encodes.popular(image, step, effort)
        if cand is None or cand.size >= below:
            return None  # (tighter steps keep more colours: larger still)
        if cand.psnr >= floor_db:
            return step, cand
    return None


# A note (the encoder's account of the choice, `udic info` shows it) may take at most this share
# of the file; past it the file says only what was asked (``brief``, e.g. "--target-psnr 42").
# Why: on flat art a pixel-coded file can be 1-2 KB, where a 125-byte note was 10 % of it.
NOTE_SHARE = 0.02


def _noted(cand: Candidate, note: str | None, brief: str | None = None) -> Candidate:
    """The candidate's file with the encoder's account of the choice: ``note``, or ``brief``
    where the note would be over NOTE_SHARE of the file (the result still carries the whole
    note, for the terminal)."""
    from . import pixelcodec

    written = note
    if note and brief and len(note.encode("utf-8")) > NOTE_SHARE * cand.size:
        written = brief
    result = pixelcodec.with_note(cand.result, written)  # type: ignore[arg-type]
    result.note = note
    return Candidate(result, cand.psnr)


def _fitting(cand: Candidate, budget: int, note: str, brief: str | None = None) -> Candidate | None:
    """The candidate with its note (``_noted``) if that fits ``budget`` bytes, else with
    ``brief``, else without, else None."""
    for text, short in [(note, brief)] + ([(brief, None)] if brief else []) + [(None, None)]:
        noted = _noted(cand, text, short)
        if noted.size <= budget:
            return noted
    return None


class _Encodes:
    """Counts the mode choice's pixel-coder encodes for a progress line (phase "pixels"): on a
    large screenshot each takes seconds."""

    def __init__(self, on_step: OnStep | None) -> None:
        self.on_step, self.done = on_step, 0

    def candidate(self, image: LoadedImage, max_error: int, effort: int) -> Candidate:
        return self._counted(lambda: _pixel_candidate(image, max_error, effort))

    def popular(self, image: LoadedImage, max_error: int, effort: int) -> Candidate | None:
        return self._counted(lambda: _popular_candidate(image, max_error, effort))

    def _counted(self, encode: Callable[[], Candidate | None]) -> Candidate | None:
        if self.on_step is not None and self.done == 0:
            self.on_step("pixels", 0, PLANNED_ENCODES, math.nan)
        cand = encode()
        self.done += 1
        if self.on_step is not None:
            self.on_step("pixels", min(self.done, PLANNED_ENCODES), PLANNED_ENCODES, math.nan)
        return cand


class _Ladder:
    """The near-lossless steps, tightest first, each encoded on first use and only once:
    the searches narrow a range of it (size falls and error grows with the step)."""

    def __init__(self, image: LoadedImage, effort: int, encodes: _Encodes | None = None,
                 steps: tuple[int, ...] = NEAR_LOSSLESS_CANDIDATES) -> None:
        self.steps = sorted(steps)
        self._image, self._effort = image, effort
        self._encodes = encodes or _Encodes(None)
        self._made: dict[int, Candidate] = {}

    def made(self) -> list[int]:
        """The steps encoded so far (by index)."""
        return sorted(self._made)

    def __getitem__(self, i: int) -> Candidate:
        if i not in self._made:
            self._made[i] = self._encodes.candidate(self._image, self.steps[i], self._effort)
        return self._made[i]


def _tolerance_search(image: LoadedImage, effort: int, budget: int, exact_size: int,
                      encodes: _Encodes | None = None) -> tuple[int, Candidate] | None:
    """The tightest near-lossless step whose file fits ``budget`` bytes: sizes fall as the step
    grows, so the fitting steps run from some step to the loosest.  Each probe is the step that
    the sizes known so far (``exact_size`` at ±0 included), interpolated over log2(1 + N), put
    nearest the budget on the fitting side: usually 2 encodes where halving the ladder took 3."""
    ladder = _Ladder(image, effort, encodes)
    lo, hi = 0, len(ladder.steps) - 1
    if ladder[hi].size > budget:
        return None
    while lo < hi:
        mid = _probe(ladder, lo, hi, budget, exact_size)
        if ladder[mid].size <= budget:
            hi = mid
        else:
            lo = mid + 1
    return ladder.steps[lo], ladder[lo]


def _probe(ladder: _Ladder, lo: int, hi: int, budget: int, exact_size: int) -> int:
    """The step in [lo, hi) to encode next (see ``_tolerance_search``): hi is known to fit and
    every step below lo is known not to (or lo is 0, whose bound is the exact file).

    Log-size is close to linear in log2(1 + N) (each doubling of the tolerance takes off a
    similar share of the bytes), so the probe is the step nearest to where that line meets the
    budget.  On the dev ladders (30 images, 60 budgets each from 1/20 of the exact file up) it
    takes 1.78 encodes a search against 2.02 for interpolating the bytes themselves, with the
    same steps chosen."""
    def x(step: int) -> float:
        return math.log2(1 + step)

    below = (x(ladder.steps[lo - 1]), ladder[lo - 1].size) if lo > 0 else (0.0, exact_size)
    above = (x(ladder.steps[hi]), ladder[hi].size)
    if below[1] <= above[1]:
        return (lo + hi) // 2  # sizes that do not fall: nothing to interpolate
    log_below, log_above = math.log(below[1]), math.log(above[1])
    at = below[0] + (above[0] - below[0]) * (log_below - math.log(max(budget, 1))) / (log_below - log_above)
    return min(range(lo, hi), key=lambda i: abs(x(ladder.steps[i]) - at))


def _most_faithful_within(image: LoadedImage, effort: int, budget: int, beats: Callable[[float], bool],
                          exact_note: Callable[[], str], near_note: Callable[[int, float], str],
                          on_step: OnStep | None = None, brief: str | None = None) -> Candidate | None:
    """The most faithful pixel-coded file of at most ``budget`` bytes (every byte, the note
    included where it fits): lossless, else the tightest near-lossless step that fits, if its
    PSNR ``beats`` the alternative; None when none does.  Near-lossless is tried only when the
    lossless file is within NEAR_LOSSLESS_REACH of the budget."""
    encodes = _Encodes(on_step)
    exact = encodes.candidate(image, 0, effort)
    if exact.size <= budget:
        noted = _fitting(exact, budget, exact_note(), brief)
        if noted is not None:
            return noted
    if exact.size > NEAR_LOSSLESS_REACH * budget:
        return None
    found = _tolerance_search(image, effort, budget, exact.size, encodes)
    if found is None or not beats(found[1].psnr):
        return None
    max_error, near = found
    return _fitting(near, budget, near_note(_file_tolerance(near, max_error), near.psnr), brief)


def _file_tolerance(cand: Candidate, step: int) -> int:
    """The tolerance a note names: the one asked of the coder for this ladder ``step``, in the
    samples' units as ``udic info`` says it (±2 is ±512 on 16-bit samples), also where the coder
    found the exact payload smaller (its header then says 0); ``step`` where none was recorded."""
    return step if cand.tolerance is None else cand.tolerance


def _db(psnr: float) -> str:
    """A PSNR for a note (a tolerance step can decode exactly)."""
    return f"{psnr:.2f} dB" if math.isfinite(psnr) else "exact here"


def _smallest_within(image: LoadedImage, effort: int, budget: int, floor_db: float,
                     exact_note: Callable[[], str], near_note: Callable[[int, float], str],
                     on_step: OnStep | None = None, brief: str | None = None) -> Candidate | None:
    """The smallest pixel-coded file of at most ``budget`` bytes whose PSNR is at least
    ``floor_db``: the loosest step of SMALLEST_CANDIDATES that reaches it (PSNR falls as the
    step grows, and so does the size, so the loosest is the smallest), else lossless; None when
    that does not fit.  Near-lossless is tried only within NEAR_LOSSLESS_REACH, as for the
    most faithful file; the loosest step is encoded first and usually settles it."""
    encodes = _Encodes(on_step)
    exact = encodes.candidate(image, 0, effort)
    if exact.size > NEAR_LOSSLESS_REACH * budget:
        return None
    ladder = _Ladder(image, effort, encodes, SMALLEST_CANDIDATES)
    found = None
    lo, hi = 0, len(ladder.steps) - 1
    if ladder[hi].size <= budget:  # (else no tighter step fits either: a photo's ±64 is MBs)
        if ladder[hi].psnr >= floor_db:
            found = hi
        else:
            hi -= 1
            while lo <= hi:  # the loosest step that reaches the floor
                mid = (lo + hi + 1) // 2
                if ladder[mid].psnr < floor_db:
                    hi = mid - 1
                    continue
                found, lo = mid, mid + 1
                if ladder[mid].size > budget:
                    break  # it reaches the floor but does not fit: the tighter steps are larger
    if found is not None:
        # A looser step is now and then no smaller than a tighter one the search has made.
        found = min((i for i in ladder.made() if ladder[i].psnr >= floor_db), key=lambda i: (ladder[i].size, -i))
    if found is not None and ladder[found].size < exact.size:
        step, near = ladder.steps[found], ladder[found]
        return _fitting(near, budget, near_note(_file_tolerance(near, step), near.psnr), brief)
    return _fitting(exact, budget, exact_note(), brief) if exact.size <= budget else None


def choose_smaller(image: LoadedImage, lossy: Candidate, effort: int, quality: float,
                   on_step: OnStep | None = None) -> Candidate:
    """The lossy file, unless a pixel-coded one is no larger and at least as good: the most
    faithful such file, or below SMALLEST_BELOW (the request for the smallest file) the
    smallest."""
    if effort < MIN_CHOICE_EFFORT:
        return lossy
    learned = f"the learned file at -q {quality:g} ({lossy.size} B, {lossy.psnr:.2f} dB)"

    def exact_note() -> str:
        return f"lossless: no larger than {learned}"

    if quality < SMALLEST_BELOW:
        chosen = _smallest_within(
            image, effort, lossy.size, lossy.psnr, exact_note,
            lambda n, db: f"near-lossless ±{n}: {_db(db)}, the smallest file no larger and no worse than {learned}",
            on_step, f"-q {quality:g}: no larger, no worse")
    else:
        chosen = _most_faithful_within(
            image, effort, lossy.size, lambda db: db >= lossy.psnr, exact_note,
            lambda n, db: f"near-lossless ±{n}: {db:.2f} dB, smaller and better than {learned}", on_step,
            f"-q {quality:g}: no larger, no worse")
    return lossy if chosen is None else chosen


def uniform_error_psnr(max_error: int) -> float:
    """The PSNR (8-bit) of errors spread evenly over ±max_error: a floor for a near-lossless
    file, whose flat regions usually decode closer (often exactly)."""
    return math.inf if max_error == 0 else 10 * math.log10(3 * 255**2 / (max_error * (max_error + 1)))


def _first_probe(ladder: _Ladder, target_db: float) -> int:
    """The loosest step whose evenly spread error would still reach ``target_db``."""
    return max((i for i, n in enumerate(ladder.steps) if uniform_error_psnr(n) >= target_db), default=0)


# A looser step is typically 0.8x the bytes of the one before it, and the steps that reach a
# target lie within a couple of steps of the first probe: a first probe over this many times the
# learned file leaves nothing to find (kodim05 at 30 dB: ±12 was 2.7x, 3 more encodes for nothing).
PROBE_REACH = 2.0


def _loosest_reaching(ladder: _Ladder, target_db: float) -> int | None:
    """The ladder index of the smallest file whose PSNR reaches ``target_db``, None when even the
    tightest step falls short.  PSNR falls as the tolerance grows, so this bisects for the last
    step that still reaches it, starting from the loosest step whose even-error floor reaches it
    (usually a hit, so the search only looks looser)."""
    last = len(ladder.steps) - 1
    guess = _first_probe(ladder, target_db)
    if ladder[guess].psnr >= target_db:
        lo, hi = guess, last
    elif guess > 0 and ladder[0].psnr >= target_db:
        lo, hi = 0, guess - 1
    else:
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ladder[mid].psnr >= target_db:
            lo = mid
        else:
            hi = mid - 1
    # PSNR is not quite monotone in the step (merged colours can decode closer than a tighter
    # predictive file): of the files made, the smallest that reaches the target.
    return min((i for i in ladder.made() if ladder[i].psnr >= target_db), key=lambda i: (ladder[i].size, i))  # ties: the tighter bound


def meet_psnr(image: LoadedImage, target_db: float, effort: int, best_lossy_db: float,
              on_step: OnStep | None = None) -> Candidate:
    """The smallest pixel coding whose PSNR reaches ``target_db`` (lossless if none does)."""
    encodes = _Encodes(on_step)
    brief = f"--target-psnr {target_db:g}"
    ladder = _Ladder(image, effort, encodes, TARGET_CANDIDATES)
    found = _loosest_reaching(ladder, target_db)
    exact = None if found is not None else encodes.candidate(image, 0, effort)  # the fallback, made once
    best_size = ladder[found].size if exact is None else exact.size
    popular = _smallest_popular(image, effort, target_db, best_size, encodes)
    if popular is not None:
        step, cand = popular
        return _noted(cand, f"near-lossless ±{step}, rare colours merged: {_db(cand.psnr)} meets --target-psnr "
                            f"{target_db:g} (the learned codec reaches {best_lossy_db:.2f} dB)", brief)
    if found is not None:
        cand = ladder[found]
        if math.isfinite(cand.psnr):
            return _noted(cand, f"near-lossless ±{_file_tolerance(cand, ladder.steps[found])}: {cand.psnr:.2f} dB meets --target-psnr "
                                f"{target_db:g} (the learned codec reaches {best_lossy_db:.2f} dB)", brief)
        # A tolerance step can decode exactly (and be smaller than the lossless file).
        mode = "lossless" if cand.result.max_error == 0 else f"near-lossless ±{cand.result.max_error}, exact here"  # type: ignore[attr-defined]
    else:
        cand, mode = exact, "lossless"
    return _noted(cand, f"{mode}: --target-psnr {target_db:g} is above what the "
                        f"learned codec reaches ({best_lossy_db:.2f} dB)", brief)


def smaller_meeting_psnr(image: LoadedImage, target_db: float, lossy: Candidate, effort: int,
                         on_step: OnStep | None = None) -> Candidate:
    """For a PSNR target the network meets: the smallest pixel-coded file that reaches it too
    (or is no worse than the learned file) when that is smaller than the learned file, else the
    learned file.  Near-lossless is tried only within NEAR_LOSSLESS_REACH of the learned file,
    and no further than its first probe where that is far off (PROBE_REACH): a photo costs one
    lossless encode, or two (kodim05 at 30 dB: 12x, its ±12 file 2.7x the learned one)."""
    if effort < MIN_CHOICE_EFFORT:
        return lossy
    floor_db = min(target_db, lossy.psnr)
    encodes = _Encodes(on_step)
    exact = encodes.candidate(image, 0, effort)
    if exact.size > NEAR_LOSSLESS_REACH * lossy.size:
        return lossy
    learned = f"the learned file ({lossy.size} B, {lossy.psnr:.2f} dB)"
    brief = f"--target-psnr {target_db:g}"
    ladder = _Ladder(image, effort, encodes, TARGET_CANDIDATES)
    first = ladder[_first_probe(ladder, floor_db)]
    reaches = first.psnr >= floor_db
    if first.size > (PROBE_REACH if reaches else 1.0) * lossy.size:
        found = None  # tighter steps are larger still, looser ones too far from it to win
    else:
        found = _loosest_reaching(ladder, floor_db)
    best_size = min(exact.size, lossy.size, ladder[found].size if found is not None else exact.size)
    popular = _smallest_popular(image, effort, floor_db, best_size, encodes)
    if popular is not None:
        step, near = popular
        return _fitting(near, lossy.size - 1, f"near-lossless ±{step}, rare colours merged: {_db(near.psnr)} "
                        f"meets --target-psnr {target_db:g} in fewer bytes than {learned}", brief) or lossy
    if found is not None and ladder[found].size < min(exact.size, lossy.size):
        near = ladder[found]
        return _fitting(near, lossy.size - 1, f"near-lossless ±{_file_tolerance(near, ladder.steps[found])}: {_db(near.psnr)} meets "
                        f"--target-psnr {target_db:g} in fewer bytes than {learned}", brief) or lossy
    if exact.size < lossy.size:
        return _fitting(exact, lossy.size - 1, f"lossless: smaller than {learned}", brief) or lossy
    return lossy


def best_within_bytes(image: LoadedImage, budget: int, lossy: Candidate, effort: int,
                      on_step: OnStep | None = None) -> Candidate:
    """For a size target: a pixel-coded file that fits the budget and beats the lossy PSNR
    (the caller decides whether to look: from MIN_CHOICE_EFFORT, or beyond the learned top)."""
    chosen = _most_faithful_within(
        image, effort, budget, lambda db: db > lossy.psnr,
        lambda: f"lossless: fits the size target ({budget} B)",
        lambda n, db: f"near-lossless ±{n}: {db:.2f} dB within the size target (the learned file: {lossy.psnr:.2f} dB)",
        on_step, f"size target {budget} B")
    return lossy if chosen is None else chosen

"""The plane coder: interlaced passes, predictor choice, contexts and tables.

Encoder and decoder walk the same pass list; inside a pass the planes are coded in
order, so a later colour plane can use the earlier planes' values *at the same
pixels* (inter-plane prediction and context).  All side information (context
thresholds, tables, per-pass predictors) precedes one ANS stream that holds every
token and raw bit in decode order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ContainerError
from . import coding
from .adaptive import PLANES, AdaptiveModel
from .coding import Decoder, OpList
from .payload import Reader, Writer
from .predict import (
    DC,
    NUM_GROUPS,
    OFFSETS,
    PRED_AVERAGE,
    PRED_CLAMPED,
    PRED_COPY,
    PRED_LINEAR,
    WEIGHT_LIMIT,
    Pass,
    activity,
    average,
    fit_linear,
    gather,
    grid,
    index_symbols,
    index_values,
    LITERAL_BASE,
    MATCH_HINT,
    _pixel_keys,
    releasing_pixel_caches,
    set_pixel_keys,
    first_neighbour_support,
    MATCH_OFFSET,
    in_pass,
    DIRECTION_NEIGHBOURS,
    MATCH_NONE,
    offset_hint,
    offset_ids,
    verified_ids,
    match_activity,
    match_values,
    offset_sources,
    resolve_copies,
    pixel_match,
    num_predictors,
    palette_activity,
    pass_list,
    predict,
    TEXTURE_CLASSES,
    texture_context,
)

MAX_BINS = 32
MATCH_BINS = 32  # the match plane uses one bin per context value (version 2)
MATCH_EXTRA = 6  # version 3: each match context value splits by unmatched neighbours (0, 1, 2+) × (nb0 = nb1)
THRESHOLD_LIMIT = 1 << 24
TEXTURE_VERSION = 8  # payload version from which sample planes' contexts split by texture class


@dataclass(frozen=True)
class PlaneSpec:
    """What the decoder must know about a plane before decoding it (derived from the header)."""

    lo: int
    hi: int
    max_error: int  # 0 = exact
    palette_size: int  # > 0: an index plane, coded by neighbour rank / literal, not by prediction
    colour: bool  # takes part in inter-plane prediction

    @property
    def mid(self) -> int:
        return (self.lo + self.hi) >> 1


def _clamp_prediction(pred: np.ndarray, spec: PlaneSpec) -> np.ndarray:
    return np.minimum(np.maximum(pred, spec.lo), spec.hi)


def _quantise(x: np.ndarray, pred: np.ndarray, spec: PlaneSpec) -> tuple[np.ndarray, np.ndarray]:
    """(coded residual, reconstruction) — every reconstruction within ±max_error of x."""
    r = x - pred
    n = spec.max_error
    if n == 0:
        return r, x
    step = 2 * n + 1
    q = np.sign(r) * ((np.abs(r) + n) // step)
    return q, np.minimum(np.maximum(pred + q * step, spec.lo), spec.hi)


def _reconstruct(q: np.ndarray, pred: np.ndarray, spec: PlaneSpec) -> np.ndarray:
    value = pred + q * (2 * spec.max_error + 1) if spec.max_error else pred + q
    return np.minimum(np.maximum(value, spec.lo), spec.hi).astype(np.int32)


def plane_alphabet(spec: PlaneSpec) -> int:
    """Tokens a plane can produce: index planes up to literal P − 1, others up to zigzag(±(hi − lo))."""
    top = LITERAL_BASE + spec.palette_size - 1 if spec.palette_size else 2 * (spec.hi - spec.lo)
    return int(coding.tokenize(np.array([max(top, 0)]))[0][0]) + 1


def match_alphabet(offsets: int, colours: int) -> int:
    """Match symbols: ranks 0…7, none, hint, one per copy offset, one for a named colour."""
    return MATCH_OFFSET + offsets + (1 if colours else 0)


def _bins(thr: np.ndarray, act: np.ndarray) -> np.ndarray:
    """Context bin = number of thresholds ≤ activity (a lookup table when thresholds are small)."""
    if thr.size == 0:
        return np.zeros(act.shape, dtype=np.int64)
    top = int(thr[-1])
    if top <= 1 << 16:
        lut = np.searchsorted(thr, np.arange(top + 1), side="right").astype(np.uint8)
        return lut[np.minimum(act, top)].astype(np.int64)
    return np.searchsorted(thr, act, side="right")


def _group_order(table_of: np.ndarray, tables: int) -> tuple[np.ndarray, list[int]]:
    """Positions sorted by table (stable, so pixel order within a table) and the table sizes."""
    table_of = table_of.astype(np.uint8)
    order = np.argsort(table_of, kind="stable")
    counts = np.bincount(table_of, minlength=tables).tolist()
    return order, counts


def _cost_bins(act: np.ndarray) -> np.ndarray:
    """log2(activity) bins of ``_provisional_cost``, premultiplied by the token count."""
    return np.minimum(np.frexp(act.astype(np.float64) + 1)[1], 20) * coding.MAX_TOKENS


def _provisional_cost(q: np.ndarray, bins: np.ndarray) -> float:
    """Bits under per-image tables with log2(activity) bins (``_cost_bins``): ranks predictor
    candidates."""
    token, nraw, _ = coding.tokenize(coding.zigzag(q))
    hist = np.bincount(bins + token, minlength=21 * coding.MAX_TOKENS)
    hist = hist.reshape(21, coding.MAX_TOKENS)
    return float(coding.entropy_bits_rows(hist).sum()) + float(nraw.sum())


COST_SAMPLE = 16384  # candidate predictors are ranked on at most about this many pixels


def _candidates(kind: int, spec: PlaneSpec, effort: int, linear_ok: bool) -> list[int]:
    if kind == DC:
        return [PRED_LINEAR] if (linear_ok and effort > 0) else [PRED_AVERAGE]
    copies = list(range(PRED_COPY, num_predictors(kind)))
    if effort == 0:
        return [PRED_LINEAR]
    if effort == 1:
        return [PRED_AVERAGE, PRED_LINEAR, PRED_CLAMPED] + copies[:2]
    return [PRED_AVERAGE, PRED_LINEAR, PRED_CLAMPED] + copies


def _num_bins(pixels: int) -> int:
    return int(np.clip(int(np.log2(max(pixels, 1))) - 5, 1, MAX_BINS))


def _thresholds(act: np.ndarray, bins: int) -> np.ndarray:
    """Bin edges at activity quantiles: bin = number of thresholds ≤ activity."""
    if bins <= 1 or act.size == 0:
        return np.zeros(0, dtype=np.int64)
    qs = np.quantile(act, np.arange(1, bins) / bins, method="lower").astype(np.int64) + 1
    return np.unique(np.minimum(qs, THRESHOLD_LIMIT))


def _run_index(starts: list[int], bins: int) -> np.ndarray:
    idx = np.zeros(bins, dtype=np.int64)
    for s in starts[1:]:
        idx[s:] += 1
    return idx


@dataclass
class _Record:
    pred: int
    weights: np.ndarray | None
    act: np.ndarray
    token: np.ndarray
    nraw: np.ndarray
    raw: np.ndarray
    bins: np.ndarray | None = None
    texture: np.ndarray | None = None  # sample planes: texture class per coded pixel (version 8)


class _KeyMap:
    """Per pixel of the planes, a key that is equal exactly when two pixels are equal in every
    plane: the match stage compares neighbour pixels, and gathering their keys costs less than
    building keys from the gathered planes (the map is updated once per pass, for its pixels)."""

    def __init__(self, specs: list[PlaneSpec], height: int, width: int) -> None:
        self.top = max(max(abs(s.lo), abs(s.hi)) for s in specs)
        self.bits = (2 * self.top).bit_length()
        self.on = len(specs) > 1 and self.bits * len(specs) <= 62
        if self.on:
            zero = self._keys(np.zeros((len(specs), 1), dtype=np.int64))[0]
            self.map = np.full((height, width), zero, dtype=np.int64)

    def _keys(self, values: np.ndarray) -> np.ndarray:
        keys = np.zeros(values.shape[1:], dtype=np.int64)
        for plane in values:
            keys <<= self.bits
            keys |= plane.astype(np.int64) + self.top
        return keys

    def neighbours(self, nb_all: np.ndarray, p: Pass) -> None:
        if self.on:
            set_pixel_keys(nb_all, gather(self.map[None], p)[0])

    def update(self, recon: np.ndarray, tgt: tuple[slice, slice]) -> None:
        if self.on:
            self.map[tgt] = self._keys(recon[:, tgt[0], tgt[1]])


def match_context(nb_all: np.ndarray, agree: np.ndarray) -> np.ndarray:
    """Match-plane activity (0…31).  Without a hinted copy offset: 4·min(distinct − 1, 3) +
    min(support, 3), where support = how many other neighbour pixels equal neighbour 0 (so
    which side of an edge the pixel falls is predictable); with one: 16 + min(distinct − 1, 3)
    + 4·min(agree − 1, 3), agree = direction neighbours carrying the hinted offset."""
    distinct = np.minimum(match_activity(nb_all), 3)
    plain = 4 * distinct + np.minimum(first_neighbour_support(nb_all), 3)
    return np.where(agree > 0, 16 + distinct + 4 * np.minimum(agree - 1, 3), plain)


def match_extra(symmap: np.ndarray, p: Pass, nb_all: np.ndarray) -> np.ndarray:
    """Version 3 refinement of the match context (0 … 5): 2·min(direction neighbours whose match
    symbol was "none", 2) + (neighbour pixels 0 and 1 are equal)."""
    if p.kind == DC:
        return np.zeros(p.count, dtype=np.int64)
    nbsym = gather(symmap[None], p)[0]
    dirs = DIRECTION_NEIGHBOURS[p.kind]
    unmatched = np.minimum((nbsym[:dirs] == MATCH_NONE).sum(axis=0), 2)
    return 2 * unmatched + np.all(nb_all[:, 0] == nb_all[:, 1], axis=0)


def _match_model(offsets: int, colours: int) -> AdaptiveModel:
    bins = MATCH_BINS * MATCH_EXTRA
    return AdaptiveModel(NUM_GROUPS, bins, match_alphabet(offsets, colours), np.arange(bins) // MATCH_EXTRA, PLANES)


def _plane_model(bins: int, spec: PlaneSpec, textured: bool) -> AdaptiveModel:
    """A plane's adaptive model; with texture classes (version 8, sample planes) each activity
    bin splits TEXTURE_CLASSES ways and stays the blend's middle level."""
    if not textured:
        return AdaptiveModel(NUM_GROUPS, bins, plane_alphabet(spec), family=PLANES)
    return AdaptiveModel(NUM_GROUPS, bins * TEXTURE_CLASSES, plane_alphabet(spec),
                         parent=np.arange(bins * TEXTURE_CLASSES) // TEXTURE_CLASSES, family=PLANES)


def _inter_context(act: np.ndarray, errors: list[np.ndarray]) -> np.ndarray:
    for e in errors:
        act = act + 2 * e
    return act


def _equal_at_offsets(source: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(K, H, W): whether each pixel equals (every plane) the pixel at offset k, inside the image."""
    _, height, width = source.shape
    out = np.zeros((len(offsets), height, width), dtype=bool)
    for k, (dy, dx) in enumerate(offsets.tolist()):
        y0, x0, x1 = dy, max(dx, 0), width + min(dx, 0)
        if y0 >= height or x0 >= x1:
            continue
        out[k, y0:, x0:x1] = np.all(source[:, y0:, x0:x1] == source[:, : height - dy, x0 - dx : x1 - dx], axis=0)
    return out


def _offset_match(equal: np.ndarray, decoded: np.ndarray, p: Pass, msym: np.ndarray, matched: np.ndarray,
                  offsets: np.ndarray, hint: np.ndarray) -> np.ndarray:
    """Encoder (lossless only): a pixel equal to its source at the hinted offset copies it (even
    if a neighbour matches too: that keeps copied regions uniform); other unmatched pixels equal
    to the pixel at a copy offset copy it, lowest offset id wins.  A source must be decoded before
    the pixel (earlier pass, or earlier in this pass).  Returns the offset id per pixel."""
    height, width = decoded.shape
    off_id = np.full(p.count, -1, dtype=np.int32)

    def copyable(at: np.ndarray, ids: np.ndarray) -> np.ndarray:
        y, x = p.ys[at // p.xs.size], p.xs[at % p.xs.size]
        sy, sx, inside = offset_sources(p, at, ids, offsets, height, width)
        same, _ = in_pass(p, sy, sx)
        return equal[ids, y, x] & inside & (same | decoded[sy, sx])

    at = np.flatnonzero(hint >= 0)
    hit = at[copyable(at, hint[at])]
    msym[hit] = MATCH_HINT
    off_id[hit] = hint[hit]
    matched[hit] = True
    at = np.flatnonzero(~matched)
    if at.size and len(offsets):
        ok = np.stack([copyable(at, np.full(at.size, k)) for k in range(len(offsets))])
        first = np.argmax(ok, axis=0)
        hit = ok[first, np.arange(at.size)]
        msym[at[hit]] = MATCH_OFFSET + first[hit]
        off_id[at[hit]] = first[hit]
        matched[at[hit]] = True
    return off_id


MAX_COLOURS = 64  # frequent colours the match stage can name (one table, so at most coding.MAX_TOKENS)
COLOUR_SURPRISE = 8  # the encoder names a colour only where interpolation misses by more than this


def _frequent_colours(source: np.ndarray, count: int) -> np.ndarray:
    """(Q, C): the colours most frequent among pixels that differ from all four direct neighbours
    (a stand-in for the pixels neighbour matching will leave over: outlines, anti-aliasing)."""
    planes, height, width = source.shape
    lonely = np.ones((height, width), dtype=bool)
    same_h = np.all(source[:, :, 1:] == source[:, :, :-1], axis=0)
    same_v = np.all(source[:, 1:] == source[:, :-1], axis=0)
    lonely[:, 1:] &= ~same_h
    lonely[:, :-1] &= ~same_h
    lonely[1:] &= ~same_v
    lonely[:-1] &= ~same_v
    pixels = source[:, lonely]
    if pixels.shape[1] == 0 or count == 0:
        return np.zeros((0, planes), dtype=np.int64)
    keys = _pixel_keys(pixels[:, None, :])
    if keys is None:
        return np.zeros((0, planes), dtype=np.int64)
    _, first, counts = np.unique(keys[0], return_index=True, return_counts=True)
    best = np.argsort(-counts, kind="stable")[:count]
    best = best[counts[best] >= 4]
    return pixels[:, first[best]].T.astype(np.int64)


def _colour_match(x_all: np.ndarray, msym: np.ndarray, matched: np.ndarray, mvals: np.ndarray,
                  colours: np.ndarray, tolerance: np.ndarray, base: int, surprise: np.ndarray) -> np.ndarray:
    """Encoder: unmatched pixels within ±tolerance of a listed colour name it (first wins), but only
    where interpolation is poor (``surprise``): elsewhere the residual is cheaper than the name.
    The symbol is ``base``; returns the colour numbers of the naming pixels, in pass order."""
    ids = np.full(msym.size, -1, dtype=np.int64)
    top = int(max(np.abs(x_all).max(initial=0), np.abs(colours).max(initial=0)))
    if not tolerance.any() and len(colours) and (2 * top + 1).bit_length() * x_all.shape[0] <= 62:
        # Exact naming: the listed colours are distinct, so at most one matches; find it by key.
        at = np.flatnonzero(~matched & surprise)
        bits = (2 * top + 1).bit_length()
        keys = np.zeros(at.size, dtype=np.int64)
        ckeys = np.zeros(len(colours), dtype=np.int64)
        for c in range(x_all.shape[0]):
            keys = (keys << bits) | (x_all[c, at].astype(np.int64) + top)
            ckeys = (ckeys << bits) | (colours[:, c].astype(np.int64) + top)
        sorter = np.argsort(ckeys)
        pos = sorter[np.minimum(np.searchsorted(ckeys, keys, sorter=sorter), len(colours) - 1)]
        hit = ckeys[pos] == keys
        at, pos = at[hit], pos[hit]
        msym[at] = base
        ids[at] = pos
        mvals[:, at] = colours[pos].T
        matched[at] = True
        return ids[ids >= 0]
    for j, colour in enumerate(colours):
        at = np.flatnonzero(~matched & surprise)
        if at.size == 0:
            break
        hit = at[np.all(np.abs(x_all[:, at] - colour[:, None]) <= tolerance[:, None], axis=0)]
        msym[hit] = base
        ids[hit] = j
        mvals[:, hit] = colour[:, None]
        matched[hit] = True
    return ids[ids >= 0]


@releasing_pixel_caches
def encode_planes(planes: list[np.ndarray], specs: list[PlaneSpec], effort: int, out: Writer,
                  match: bool = False, offsets: list[tuple[int, int]] | None = None) -> bytes:
    """Writes the plane side information to ``out``; returns the ANS stream bytes.

    With ``match``, each pass first codes per pixel whether it equals (within ±max_error)
    one of its distinct neighbour pixels, or (lossless) the pixel at one of ``offsets``;
    only the other pixels code their planes.
    """
    offsets = offsets or []
    offset_arr = np.array(offsets, dtype=np.int64).reshape(-1, 2)
    tolerance = np.array([s.max_error for s in specs], dtype=np.int32)
    if planes[0].size >= 1 << 16:
        coding.token_lut()  # many small tokenize calls follow (sampled costs, unmatched pixels)
    height, width = planes[0].shape
    passes = pass_list(height, width)
    source = np.stack(planes).astype(np.int32)
    recon = np.zeros_like(source)
    equal = _equal_at_offsets(source, offset_arr)
    palette = any(spec.palette_size for spec in specs)
    colours = _frequent_colours(source, 0 if palette else MAX_COLOURS) if match else np.zeros((0, len(specs)), np.int64)
    colour_base = MATCH_OFFSET + len(offsets)
    decoded = np.zeros((height, width), dtype=bool)
    idmap = np.full((height, width), -1, dtype=np.int32)
    symmap = np.full((height, width), -1, dtype=np.int32)
    records: list[list[_Record]] = []
    colour_ids: list[np.ndarray] = []
    keymap = _KeyMap(specs, height, width) if match else None
    for p in passes:
        n = p.count
        nb_all = gather(recon, p)
        tgt = grid(p)
        if keymap is not None:
            keymap.neighbours(nb_all, p)
        inter: list[np.ndarray] = []
        errors: list[np.ndarray] = []
        row: list[_Record] = []
        x_all = source[:, tgt[0], tgt[1]].reshape(len(specs), n)
        coded: np.ndarray | slice = slice(None)
        matched = None
        off_id = None
        if match:
            msym, matched, mvals = pixel_match(x_all, nb_all, tolerance)
            hint, agree = offset_hint(idmap, p) if offsets else (np.full(n, -1, np.int32), np.zeros(n, np.int32))
            off_id = _offset_match(equal, decoded, p, msym, matched, offset_arr, hint) if offsets else None
            if len(colours):
                guess = np.stack([average(p.kind, list(nb_all[c]), specs[c].mid, n) for c in range(len(specs))])
                surprise = np.abs(x_all - guess).max(axis=0) > COLOUR_SURPRISE
                colour_ids.append(_colour_match(x_all, msym, matched, mvals, colours, tolerance, colour_base, surprise))
            else:
                colour_ids.append(np.zeros(0, dtype=np.int64))
            zero = np.zeros(n, dtype=np.int64)
            mctx = match_context(nb_all, agree) * MATCH_EXTRA + match_extra(symmap, p, nb_all)
            row.append(_Record(PRED_AVERAGE, None, mctx, msym.astype(np.int32), zero, zero))
            symmap[tgt] = msym.reshape(p.ys.size, p.xs.size)
            coded = np.flatnonzero(~matched)
        n_coded = n if matched is None else coded.size
        sample = np.arange(n)[coded][:: max(1, n_coded // COST_SAMPLE)]
        for c, spec in enumerate(specs):
            nb = list(nb_all[c])
            x = x_all[c]
            feats_inter = inter if spec.colour else []
            act = (palette_activity if spec.palette_size else activity)(p.kind, nb, n)
            if spec.colour:
                act = _inter_context(act, errors)
            if spec.palette_size:
                sym = index_symbols(x, nb)
                recon[c][tgt] = x.reshape(p.ys.size, p.xs.size)
                token, nraw, raw = coding.tokenize(sym[coded])
                row.append(_Record(PRED_AVERAGE, None, act[coded], token, nraw, raw))
                continue
            linear_ok = len(nb) + len(feats_inter) > 0
            cands = _candidates(p.kind, spec, effort, linear_ok)
            best = None
            linear_weights = None
            if len(cands) > 1 and sample.size:
                nbs = [f[sample] for f in nb]
                fis = [f[sample] for f in feats_inter]
                x_sample = x[sample]
                cost_bins = _cost_bins(act[sample])
            for cand in cands:
                if cand in (PRED_LINEAR, PRED_CLAMPED):
                    weights = linear_weights if linear_weights is not None else fit_linear(nb + feats_inter, x)
                    linear_weights = weights
                else:
                    weights = None
                if len(cands) == 1 or sample.size == 0:
                    best = (0.0, cand, weights)
                    break
                pred = _clamp_prediction(predict(cand, p.kind, nbs, fis, weights, spec.mid, nbs[0].size if nbs else 1), spec)
                q, _ = _quantise(x_sample, pred, spec)
                cost = _provisional_cost(q, cost_bins)
                if best is None or cost < best[0]:
                    best = (cost, cand, weights)
            _, cand, weights = best
            pred = _clamp_prediction(predict(cand, p.kind, nb, feats_inter, weights, spec.mid, n), spec)
            q, rec = _quantise(x, pred, spec)
            texture = texture_context(p.kind, nb, pred)[coded]
            if matched is not None:
                rec = np.where(matched, mvals[c], rec)
            recon[c][tgt] = rec.reshape(p.ys.size, p.xs.size)
            token, nraw, raw = coding.tokenize(coding.zigzag(q[coded]))
            row.append(_Record(cand, weights, act[coded], token, nraw, raw, texture=texture))
            if spec.colour:
                inter.append(rec - average(p.kind, nb, spec.mid, n))
                errors.append(np.abs(rec - pred))
        decoded[tgt] = True
        if keymap is not None:
            keymap.update(recon, tgt)
        if off_id is not None:
            idmap[tgt] = verified_ids(recon, decoded, p, x_all, hint, off_id, offset_arr).reshape(p.ys.size, p.xs.size)
        records.append(row)

    ops = OpList()
    if match and len(colours):
        # Keep only the colours some pixel named, renumbered in list order.
        used = np.bincount(np.concatenate(colour_ids), minlength=len(colours)) > 0
        renumber = np.cumsum(used) - 1
        colour_ids = [renumber[ids] for ids in colour_ids]
        colours = colours[used]
    if match:
        out.varint(len(colours))
        for colour in colours.tolist():
            for value in colour:
                out.svarint(value)
    colour_model = AdaptiveModel(1, 1, len(colours), family=PLANES)
    models = []
    for c in range(len(specs) + match):
        if c < match:
            models.append(_match_model(len(offsets), len(colours)))
            continue
        act_all = np.concatenate([records[i][c].act for i in range(len(passes))])
        thr = _thresholds(act_all, _num_bins(height * width))
        out.u8(thr.size + 1)
        prev = 0
        for t in thr.tolist():
            out.varint(t - prev)
            prev = t
        textured = not specs[c - match].palette_size
        for i in range(len(passes)):
            records[i][c].bins = _bins(thr, records[i][c].act)
            if textured:
                records[i][c].bins = records[i][c].bins * TEXTURE_CLASSES + records[i][c].texture
        models.append(_plane_model(thr.size + 1, specs[c - match], textured))

    for i, p in enumerate(passes):
        for c in range(len(specs) + match):
            rec = records[i][c]
            if c >= match:
                out.u8(rec.pred)
                if rec.pred in (PRED_LINEAR, PRED_CLAMPED):
                    for wgt in rec.weights.tolist():
                        out.svarint(int(wgt))
            models[c].encode(ops, p.group, rec.act if c < match else rec.bins, rec.token)
            ops.add_raw(rec.raw, rec.nraw)
            if match and c == 0 and len(colours):
                colour_model.encode(ops, 0, np.zeros(colour_ids[i].size, np.int64), colour_ids[i])
    stream = ops.finish()
    out.varint(len(stream) // 4)  # so that any truncation is caught before decoding starts
    return stream


@releasing_pixel_caches
def decode_planes(reader: Reader, specs: list[PlaneSpec], height: int, width: int,
                  match: bool = False, offsets: list[tuple[int, int]] | None = None,
                  version: int = 3) -> list[np.ndarray]:
    """``version`` 3: adaptive context models; 2: per-image static tables (still decoded)."""
    offsets = offsets or []
    offset_arr = np.array(offsets, dtype=np.int64).reshape(-1, 2)
    passes = pass_list(height, width)
    groups_present = sorted({p.group for p in passes})
    colours = np.zeros((0, len(specs)), dtype=np.int32)
    colour_model = None
    if match:
        count = reader.varint("colour count", MAX_COLOURS)
        colours = np.array([[reader.svarint("colour", 1 << 17) for _ in specs] for _ in range(count)],
                           dtype=np.int64).reshape(count, len(specs))
        for c, spec in enumerate(specs):
            if count and (colours[:, c].min() < spec.lo or colours[:, c].max() > spec.hi):
                raise ContainerError("lossless payload: a listed colour is outside its plane's range")
        colours = colours.astype(np.int32)
        if count and version == 2:
            colour_q = coding.read_table(reader)
            if colour_q.size != count or np.any(colour_q == 0):
                raise ContainerError("lossless payload: malformed colour table")
            colour_model = coding.model(colour_q)
    colour_base = MATCH_OFFSET + len(offsets)
    colour_adaptive = AdaptiveModel(1, 1, len(colours), family=PLANES)
    plane_tables = []
    for c in range(len(specs) + match):
        if version >= 3 and c < match:
            plane_tables.append(_match_model(len(offsets), len(colours)))
            continue
        bins = reader.u8("context bin count")
        if not 1 <= bins <= MAX_BINS:
            raise ContainerError(f"lossless payload: {bins} context bins is out of range")
        thr = []
        prev = 0
        for _ in range(bins - 1):
            prev += reader.varint("context threshold", THRESHOLD_LIMIT)
            if thr and prev <= thr[-1] or prev < 1 or prev > THRESHOLD_LIMIT:
                raise ContainerError("lossless payload: context thresholds are not increasing")
            thr.append(prev)
        thr_arr = np.array(thr, dtype=np.int64)
        if version >= 3:
            textured = version >= TEXTURE_VERSION and not specs[c - match].palette_size
            plane_tables.append((thr_arr, _plane_model(bins, specs[c - match], textured)))
            continue
        per_group = {}
        for g in groups_present:
            mask = np.unpackbits(reader.u8_array((bins + 7) // 8, "context map"), bitorder="little")
            if mask[0] != 1 or np.any(mask[bins:]):
                raise ContainerError("lossless payload: malformed context map")
            starts = np.flatnonzero(mask[:bins]).tolist()
            models = [coding.model(coding.read_table(reader)) for _ in starts]
            per_group[g] = (_run_index(starts, bins), models)
        plane_tables.append((thr_arr, per_group))

    pass_params = []
    for p in passes:
        row = []
        for c, spec in enumerate(specs):
            pred = reader.u8("predictor")
            n_inter = c if spec.colour else 0  # colour planes come first, so earlier colour planes = c
            m = len(OFFSETS[p.kind]) + n_inter
            allowed = pred == PRED_AVERAGE if spec.palette_size else (
                pred < num_predictors(p.kind) and (pred != PRED_LINEAR or m > 0) and (pred != PRED_CLAMPED or p.kind != DC))
            if not allowed:
                raise ContainerError(f"lossless payload: predictor {pred} is not valid here")
            weights = None
            if pred in (PRED_LINEAR, PRED_CLAMPED):
                weights = np.array([reader.svarint("weight", WEIGHT_LIMIT) for _ in range(m)], dtype=np.int64)
                if np.any(weights >= WEIGHT_LIMIT) or np.any(weights < -WEIGHT_LIMIT):
                    raise ContainerError("lossless payload: predictor weight out of range")
            row.append((pred, weights))
        pass_params.append(row)

    def decode_tokens(c: int, group: int, act: np.ndarray, texture: np.ndarray | None = None) -> np.ndarray:
        if version >= 3:
            if c < match:
                return plane_tables[c].decode(dec, group, act)
            thr, model = plane_tables[c]
            bins = _bins(thr, act)
            return model.decode(dec, group, bins if texture is None else bins * TEXTURE_CLASSES + texture)
        thr, per_group = plane_tables[c]
        run_idx, models = per_group[group]
        order, counts = _group_order(run_idx[_bins(thr, act)], len(models))
        token = np.empty(act.size, dtype=np.int64)
        token[order] = np.concatenate([dec.symbols(model, cnt) for model, cnt in zip(models, counts)])
        return token

    words = reader.varint("entropy-coded length")
    if reader.remaining != 4 * words:
        raise ContainerError("lossless payload: entropy-coded data has the wrong length (truncated or padded)")
    dec = Decoder(reader.rest())
    recon = np.zeros((len(specs), height, width), dtype=np.int32)
    decoded = np.zeros((height, width), dtype=bool)
    idmap = np.full((height, width), -1, dtype=np.int32)
    symmap = np.full((height, width), -1, dtype=np.int32)
    keymap = _KeyMap(specs, height, width) if match else None
    for i, p in enumerate(passes):
        n = p.count
        nb_all = gather(recon, p)
        tgt = grid(p)
        if keymap is not None:
            keymap.neighbours(nb_all, p)
        inter: list[np.ndarray] = []
        errors: list[np.ndarray] = []
        coded: np.ndarray | slice = slice(None)
        matched = None
        copies = None
        if match:
            hint, agree = offset_hint(idmap, p) if offsets else (np.full(n, -1, np.int32), np.zeros(n, np.int32))
            mctx = match_context(nb_all, agree)
            if version >= 3:
                mctx = mctx * MATCH_EXTRA + match_extra(symmap, p, nb_all)
            msym = decode_tokens(0, p.group, mctx)
            symmap[tgt] = msym.reshape(p.ys.size, p.xs.size)
            matched, mvals = match_values(msym, nb_all)
            off_id = offset_ids(msym, hint, len(offsets))
            copies = off_id >= 0
            matched |= copies
            if len(colours):
                named = np.flatnonzero(msym == colour_base)
                if version >= 3:
                    ids = colour_adaptive.decode(dec, 0, np.zeros(named.size, np.int64))
                else:
                    ids = dec.symbols(colour_model, named.size)
                # (both versions: a one-colour table is padded to two entries, whose second a
                # stream can still name)
                if ids.size and ids.max() >= len(colours):
                    raise ContainerError("lossless payload: colour number out of range")
                mvals[:, named] = colours[ids].T
                matched[named] = True
            coded = np.flatnonzero(~matched)
        for c, spec in enumerate(specs):
            pred_id, weights = pass_params[i][c]
            nb = list(nb_all[c])
            feats_inter = inter if spec.colour else []
            act = (palette_activity if spec.palette_size else activity)(p.kind, nb, n)
            if spec.colour:
                act = _inter_context(act, errors)
            texture = None
            if not spec.palette_size:
                pred = _clamp_prediction(predict(pred_id, p.kind, nb, feats_inter, weights, spec.mid, n), spec)
                if version >= TEXTURE_VERSION:
                    texture = texture_context(p.kind, nb, pred)[coded]
            token = decode_tokens(c + match, p.group, act[coded], texture)
            raw = dec.raw(coding.token_raw_bits(token))
            if spec.palette_size:
                index = index_values(coding.detokenize(token, raw), [f[coded] for f in nb], spec.palette_size)
                if matched is not None:
                    full = mvals[c].copy()
                    full[coded] = index
                    index = full
                recon[c][tgt] = index.reshape(p.ys.size, p.xs.size)
                continue
            if matched is None:
                q = coding.unzigzag(coding.detokenize(token, raw))
            else:
                q = np.zeros(n, dtype=np.int64)
                q[coded] = coding.unzigzag(coding.detokenize(token, raw))
            rec = _reconstruct(q, pred, spec)
            if matched is not None:
                rec = np.where(matched, mvals[c], rec)
            recon[c][tgt] = rec.reshape(p.ys.size, p.xs.size)
            if spec.colour:
                inter.append(rec - average(p.kind, nb, spec.mid, n))
                errors.append(np.abs(rec - pred))
        if copies is not None and copies.any():
            values = resolve_copies(recon[:, tgt[0], tgt[1]].reshape(len(specs), n), recon, decoded, p, off_id, offset_arr)
            if values is None:
                raise ContainerError("lossless payload: a copy offset points at a pixel not yet decoded")
            recon[:, tgt[0], tgt[1]] = values.reshape(len(specs), p.ys.size, p.xs.size)
        decoded[tgt] = True
        if keymap is not None:
            keymap.update(recon, tgt)
        if copies is not None and offsets:
            values = recon[:, tgt[0], tgt[1]].reshape(len(specs), n)
            idmap[tgt] = verified_ids(recon, decoded, p, values, hint, off_id, offset_arr).reshape(p.ys.size, p.xs.size)
    dec.check_finished()
    return list(recon)

"""Vectorised JSON-lines encoder for flat, fixed-shape events.

Each event type has a fixed row layout: literal bytes, plus fields made of 4- or 8-byte words
looked up in digit tables (so every write is one strided NumPy store per word). Unused bytes
are zero and squeezed out in one pass. Numbers are stored as scaled integers (latitude x 1e6,
...) and printed as plain decimals with trailing zeros stripped, i.e. what ``repr``/orjson
print for the rounded float (outside exponent notation ranges).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

_NL = 10
Rows = np.ndarray | slice


def _pack(items: list[bytes], size: int) -> np.ndarray:
    """Byte strings (each <= size) -> little-endian words of ``size`` bytes, zero padded."""
    return np.frombuffer(b"".join(x.ljust(size, b"\0") for x in items), dtype=f"<u{size}").copy()


@cache
def _digit_table(r: int, variant: str) -> np.ndarray:
    """Words for all ``r``-digit chunks (r <= 4).

    variant: ``full`` (zero padded), ``lead`` (leading zeros dropped, 0 -> empty),
    ``lead1`` (as lead but 0 -> "0").
    """
    out = []
    for v in range(10**r):
        s = f"{v:0{r}d}"
        if variant != "full":
            s = s.lstrip("0") or ("0" if variant == "lead1" else "")
        out.append(s.encode())
    return _pack(out, 4)


@cache
def _frac_table(r: int, dot: bool, variant: str) -> np.ndarray:
    """Words for ``r``-digit fraction chunks (r <= 3), optionally led by '.'.

    variant: ``full``, ``trail`` (trailing zeros dropped, 0 -> empty), ``trail1`` (0 -> "0").
    """
    out = []
    for v in range(10**r):
        s = f"{v:0{r}d}"
        if variant != "full":
            s = s.rstrip("0") or ("0" if variant == "trail1" else "")
        out.append(((b"." if dot else b"") + s.encode()) if (s or dot) else b"")
    return _pack(out, 4)


@cache
def _signed_int_table() -> np.ndarray:
    """Words for sign + 0..999 (lead-stripped, at least one digit); index v + 1000*negative."""
    items = [str(v).encode() for v in range(1000)] + [b"-" + str(v).encode() for v in range(1000)]
    return _pack(items, 4)


@cache
def _time_tables() -> tuple[np.ndarray, np.ndarray]:
    """("MM:SS." for each second of an hour, "mmmZ" for each millisecond)."""
    mmss = _pack([f"{s // 60:02d}:{s % 60:02d}.".encode() for s in range(3600)], 8)
    msz = _pack([f"{m:03d}Z".encode() for m in range(1000)], 4)
    return mmss, msz


def _chunks4(digits: int) -> list[int]:
    """Chunk sizes (left to right) for an integer, 4 digits per chunk from the right."""
    out = [4] * (digits // 4)
    if digits % 4:
        out.insert(0, digits % 4)
    return out


def _split(v: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    vals = []
    q = v
    for w in reversed(sizes):
        q, r = np.divmod(q, 10**w)
        vals.append(r)
    vals.reverse()
    return vals


class _Views:
    """Word views of a row matrix."""

    def __init__(self, mat: np.ndarray) -> None:
        self.u32 = mat.view("<u4")
        self.u64 = mat.view("<u8")


@dataclass(frozen=True)
class Lit:
    """Literal bytes."""

    text: bytes


def _fitting(values: np.ndarray, col: str, digits: int) -> np.ndarray:
    """`values` as int64, checked to be non-negative and at most `digits` digits long."""
    v = np.asarray(values, dtype=np.int64)
    if v.size and (v.min() < 0 or v.max() >= 10**digits):
        raise ValueError(f"{col}: value does not fit {digits} digits")
    return v


@dataclass(frozen=True)
class Int:
    """Non-negative integer without padding in the output (at most ``digits`` digits)."""

    col: str
    digits: int
    align = 4

    @property
    def width(self) -> int:
        """Bytes reserved in the row."""
        return 4 * len(_chunks4(self.digits))

    def write(self, m: _Views, rows: Rows, off: int, cols: Mapping[str, np.ndarray]) -> None:
        """Store the field's words at byte offset ``off`` of ``rows``."""
        v = _fitting(cols[self.col], self.col, self.digits)
        sizes = _chunks4(self.digits)
        vals = _split(v, sizes)
        higher_zero = np.ones(v.shape, dtype=bool)
        for j, (w, c) in enumerate(zip(sizes, vals, strict=True)):
            last = j == len(sizes) - 1
            strip = _digit_table(w, "lead1" if last else "lead")
            m.u32[rows, off // 4 + j] = np.where(higher_zero, strip[c], _digit_table(w, "full")[c])
            higher_zero &= c == 0


@dataclass(frozen=True)
class ZInt(Int):
    """Zero-padded non-negative integer of fixed width."""

    def write(self, m: _Views, rows: Rows, off: int, cols: Mapping[str, np.ndarray]) -> None:
        """Store the field's words at byte offset ``off`` of ``rows``."""
        v = _fitting(cols[self.col], self.col, self.digits)
        sizes = _chunks4(self.digits)
        for j, (w, c) in enumerate(zip(sizes, _split(v, sizes), strict=True)):
            m.u32[rows, off // 4 + j] = _digit_table(w, "full")[c]


@dataclass(frozen=True)
class Dec:
    """Scaled integer ``v`` printed as ``v / 10**decimals`` (int_digits <= 3, decimals <= 6)."""

    col: str
    int_digits: int
    decimals: int
    align = 4

    def __post_init__(self) -> None:
        if not (1 <= self.int_digits <= 3 and 1 <= self.decimals <= 6):
            raise ValueError("Dec supports 1..3 integer digits and 1..6 decimals")

    @property
    def width(self) -> int:
        """Bytes reserved in the row."""
        return 8 if self.decimals <= 3 else 12

    def write(self, m: _Views, rows: Rows, off: int, cols: Mapping[str, np.ndarray]) -> None:
        """Store the field's words at byte offset ``off`` of ``rows``."""
        v = np.asarray(cols[self.col], dtype=np.int64)
        d = self.decimals
        a = np.abs(v)
        ip, fp = np.divmod(a, 10**d)
        if ip.size and ip.max() >= 10**self.int_digits:
            raise ValueError(f"{self.col}: value too large for {self.int_digits} digits")
        w = off // 4
        m.u32[rows, w] = _signed_int_table()[ip + 1000 * (v < 0)]
        if d <= 3:
            m.u32[rows, w + 1] = _frac_table(d, True, "trail1")[fp]
            return
        hi, lo = np.divmod(fp, 10 ** (d - 3))
        lo_zero = lo == 0
        m.u32[rows, w + 1] = np.where(lo_zero, _frac_table(3, True, "trail1")[hi],
                                      _frac_table(3, True, "full")[hi])
        m.u32[rows, w + 2] = _frac_table(d - 3, False, "trail")[lo]


@dataclass(frozen=True)
class Bool:
    """JSON boolean."""

    col: str
    align = 8
    width = 8

    def write(self, m: _Views, rows: Rows, off: int, cols: Mapping[str, np.ndarray]) -> None:
        """Store the field's word at byte offset ``off`` of ``rows``."""
        words = _pack([b"false", b"true"], 8)
        m.u64[rows, off // 8] = words[np.asarray(cols[self.col], dtype=np.int64)]


def civil_from_ms(ms: np.ndarray) -> tuple[np.ndarray, ...]:
    """Epoch ms -> (year, month, day, hour, minute, second, millisecond) int arrays."""
    ms = np.asarray(ms, dtype=np.int64)
    days, rem = np.divmod(ms, 86_400_000)
    z = days + 719_468
    era = np.floor_divide(z, 146_097)
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = np.where(mp < 10, mp + 3, mp - 9)
    y = yoe + era * 400 + (m <= 2)
    hh, rem = np.divmod(rem, 3_600_000)
    mi, rem = np.divmod(rem, 60_000)
    ss, mss = np.divmod(rem, 1000)
    return y, m, d, hh, mi, ss, mss


def _hour_prefixes(hours: np.ndarray) -> np.ndarray:
    """Epoch hours -> (n, 2) little-endian u8 words of ``YYYY-MM-DDTHH:`` (+2 zero bytes)."""
    y, mo, d, hh, _, _, _ = civil_from_ms(hours * 3_600_000)
    if y.size and (y.min() < 0 or y.max() > 9999):
        raise ValueError("timestamp out of the 4-digit year range")
    out = np.zeros((hours.shape[0], 16), dtype=np.uint8)
    v = _Views(out)
    v.u32[:, 0] = _digit_table(4, "full")[y]
    t2 = _digit_table(2, "full").view(np.uint8).reshape(-1, 4)[:, :2]
    out[:, 5:7] = t2[mo]
    out[:, 8:10] = t2[d]
    out[:, 11:13] = t2[hh]
    out[:, 4] = out[:, 7] = 45
    out[:, 10] = 84
    out[:, 13] = 58
    return out.view("<u8")


@dataclass(frozen=True)
class Iso:
    """Epoch ms printed as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (no quotes)."""

    col: str
    align = 8
    width = 28

    def write(self, m: _Views, rows: Rows, off: int, cols: Mapping[str, np.ndarray]) -> None:
        """Store the field's words at byte offset ``off`` of ``rows``."""
        ms = np.asarray(cols[self.col], dtype=np.int64)
        if ms.size == 0:
            return
        hours, rem = np.divmod(ms, 3_600_000)
        h0 = int(hours.min())
        span = int(hours.max()) - h0 + 1
        if span > 100_000:  # far-apart times: no prefix table
            pre = _hour_prefixes(hours)
            idx: np.ndarray | slice = slice(None)
        else:
            pre = _hour_prefixes(np.arange(h0, h0 + span, dtype=np.int64))
            idx = hours - h0
        w8 = off // 8
        m.u64[rows, w8] = pre[idx, 0]
        m.u64[rows, w8 + 1] = pre[idx, 1]
        sec, milli = np.divmod(rem, 1000)
        mmss, msz = _time_tables()
        m.u64[rows, w8 + 2] = mmss[sec]
        m.u32[rows, off // 4 + 6] = msz[milli]


Field = Int | Dec | Bool | Iso  # ZInt is an Int
Part = Lit | Field


class LineEncoder:
    """Encode columns into compact JSON lines, one per row, each ending with a newline."""

    def __init__(self, parts: Sequence[Part]) -> None:
        template = bytearray()
        self.fields: list[tuple[int, Field]] = []
        for p in parts:
            if isinstance(p, Lit):
                template += p.text
                continue
            while len(template) % p.align:
                template.append(0)
            self.fields.append((len(template), p))
            template += bytes(p.width)
        template.append(_NL)
        while len(template) % 8:
            template.append(0)
        self.width = len(template)
        self.template = np.frombuffer(bytes(template), dtype=np.uint8)

    def fill(self, mat: np.ndarray, rows: Rows, cols: Mapping[str, np.ndarray]) -> None:
        """Lay out rows ``rows`` of ``mat`` (uint8, C-order, width % 8 == 0, >= self.width)."""
        mat[rows, : self.width] = self.template
        views = _Views(mat)
        seen: dict[Field, int] = {}
        for off, p in self.fields:
            if p in seen:  # same column/format again (e.g. an id): copy its words
                src = seen[p]
                for j in range(p.width // 4):
                    views.u32[rows, off // 4 + j] = views.u32[rows, src // 4 + j]
            else:
                p.write(views, rows, off, cols)
                seen[p] = off

    def encode(self, cols: Mapping[str, np.ndarray], n: int) -> bytes:
        """All rows as compact newline-terminated JSON lines."""
        mat = np.zeros((n, self.width), dtype=np.uint8)
        self.fill(mat, slice(None), cols)
        return mat[mat != 0].tobytes()


def iso_strings(ms: np.ndarray) -> list[str]:
    """Epoch ms array -> list of ISO-8601 UTC strings with milliseconds and 'Z'."""
    ms = np.asarray(ms, dtype=np.int64)
    if ms.size == 0:
        return []
    enc = LineEncoder([Iso("t")])
    return enc.encode({"t": ms}, ms.size).decode().split("\n")[:-1]

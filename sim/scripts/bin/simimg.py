"""Real PNG images and real PDFs with the standard library only.

PNGs are 8-bit palette images drawn into a bytearray (frame, axes, a histogram seeded by
the run number, a text label with a 5x7 font) and compressed at level 1, so that a
1796x772 plot takes a few milliseconds. The PDF writer embeds each PNG's IDAT stream
unchanged as a /FlateDecode image with PNG predictors, one page per image, the page as
large as the image (72 dpi), like ImageMagick's `convert a.png b.png out.pdf`.
"""

from __future__ import annotations

import random
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

WHITE, BLACK, RED, BLUE, GRAY, GREEN, ORANGE, PURPLE = range(8)
PALETTE = bytes(
    [
        *(255, 255, 255),
        *(0, 0, 0),
        *(220, 30, 30),
        *(30, 60, 220),
        *(170, 170, 170),
        *(30, 150, 60),
        *(245, 170, 30),
        *(120, 20, 160),
    ]
)

_GLYPHS: dict[str, tuple[str, ...]] = {
    "0": ("01110", "10001", "10011", "10101", "11001", "10001", "01110"),
    "1": ("00100", "01100", "00100", "00100", "00100", "00100", "01110"),
    "2": ("01110", "10001", "00001", "00010", "00100", "01000", "11111"),
    "3": ("11111", "00010", "00100", "00010", "00001", "10001", "01110"),
    "4": ("00010", "00110", "01010", "10010", "11111", "00010", "00010"),
    "5": ("11111", "10000", "11110", "00001", "00001", "10001", "01110"),
    "6": ("00110", "01000", "10000", "11110", "10001", "10001", "01110"),
    "7": ("11111", "00001", "00010", "00100", "01000", "01000", "01000"),
    "8": ("01110", "10001", "10001", "01110", "10001", "10001", "01110"),
    "9": ("01110", "10001", "10001", "01111", "00001", "00010", "01100"),
    "A": ("01110", "10001", "10001", "11111", "10001", "10001", "10001"),
    "B": ("11110", "10001", "10001", "11110", "10001", "10001", "11110"),
    "C": ("01110", "10001", "10000", "10000", "10000", "10001", "01110"),
    "D": ("11100", "10010", "10001", "10001", "10001", "10010", "11100"),
    "E": ("11111", "10000", "10000", "11110", "10000", "10000", "11111"),
    "F": ("11111", "10000", "10000", "11110", "10000", "10000", "10000"),
    "G": ("01110", "10001", "10000", "10111", "10001", "10001", "01111"),
    "H": ("10001", "10001", "10001", "11111", "10001", "10001", "10001"),
    "I": ("01110", "00100", "00100", "00100", "00100", "00100", "01110"),
    "J": ("00111", "00010", "00010", "00010", "00010", "10010", "01100"),
    "K": ("10001", "10010", "10100", "11000", "10100", "10010", "10001"),
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "M": ("10001", "11011", "10101", "10101", "10001", "10001", "10001"),
    "N": ("10001", "10001", "11001", "10101", "10011", "10001", "10001"),
    "O": ("01110", "10001", "10001", "10001", "10001", "10001", "01110"),
    "P": ("11110", "10001", "10001", "11110", "10000", "10000", "10000"),
    "Q": ("01110", "10001", "10001", "10001", "10101", "10010", "01101"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
    "S": ("01111", "10000", "10000", "01110", "00001", "00001", "11110"),
    "T": ("11111", "00100", "00100", "00100", "00100", "00100", "00100"),
    "U": ("10001", "10001", "10001", "10001", "10001", "10001", "01110"),
    "V": ("10001", "10001", "10001", "10001", "10001", "01010", "00100"),
    "W": ("10001", "10001", "10001", "10101", "10101", "10101", "01010"),
    "X": ("10001", "10001", "01010", "00100", "01010", "10001", "10001"),
    "Y": ("10001", "10001", "10001", "01010", "00100", "00100", "00100"),
    "Z": ("11111", "00001", "00010", "00100", "01000", "10000", "11111"),
    ":": ("00000", "01100", "01100", "00000", "01100", "01100", "00000"),
    ".": ("00000", "00000", "00000", "00000", "00000", "01100", "01100"),
    "_": ("00000", "00000", "00000", "00000", "00000", "00000", "11111"),
    "-": ("00000", "00000", "00000", "11111", "00000", "00000", "00000"),
    "=": ("00000", "00000", "11111", "00000", "11111", "00000", "00000"),
    "(": ("00010", "00100", "01000", "01000", "01000", "00100", "00010"),
    ")": ("01000", "00100", "00010", "00010", "00010", "00100", "01000"),
    "/": ("00000", "00001", "00010", "00100", "01000", "10000", "00000"),
    "<": ("00010", "00100", "01000", "10000", "01000", "00100", "00010"),
    ">": ("01000", "00100", "00010", "00001", "00010", "00100", "01000"),
}


class Canvas:
    """An 8-bit palette image kept as PNG scanlines (filter byte 0 + pixels per row)."""

    def __init__(self, width: int, height: int, background: int = WHITE) -> None:
        self.w = width
        self.h = height
        self.stride = width + 1
        self.buf = bytearray((b"\x00" + bytes([background]) * width) * height)

    def px(self, x: int, y: int, c: int) -> None:
        if 0 <= x < self.w and 0 <= y < self.h:
            self.buf[y * self.stride + 1 + x] = c

    def fill(self, x0: int, y0: int, x1: int, y1: int, c: int) -> None:
        x0, x1 = max(0, min(x0, x1)), min(self.w, max(x0, x1))
        y0, y1 = max(0, min(y0, y1)), min(self.h, max(y0, y1))
        if x1 <= x0 or y1 <= y0:
            return
        if x1 - x0 < y1 - y0:  # tall and narrow: one strided slice per column
            col = bytes([c]) * (y1 - y0)
            for x in range(x0, x1):
                start = y0 * self.stride + 1 + x
                self.buf[start : start + (y1 - y0) * self.stride : self.stride] = col
            return
        row = bytes([c]) * (x1 - x0)
        for y in range(y0, y1):
            start = y * self.stride + 1 + x0
            self.buf[start : start + len(row)] = row

    def rect(self, x0: int, y0: int, x1: int, y1: int, c: int, t: int = 1) -> None:
        self.fill(x0, y0, x1, y0 + t, c)
        self.fill(x0, y1 - t, x1, y1, c)
        self.fill(x0, y0, x0 + t, y1, c)
        self.fill(x1 - t, y0, x1, y1, c)

    def line(self, x0: int, y0: int, x1: int, y1: int, c: int) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(steps + 1):
            self.px(x0 + (x1 - x0) * i // steps, y0 + (y1 - y0) * i // steps, c)

    def text(self, x: int, y: int, s: str, c: int = BLACK, scale: int = 2) -> None:
        for ch in s.upper():
            glyph = _GLYPHS.get(ch)
            if glyph is not None:
                for gy, bits in enumerate(glyph):
                    for gx, bit in enumerate(bits):
                        if bit == "1":
                            xx, yy = x + gx * scale, y + gy * scale
                            self.fill(xx, yy, xx + scale, yy + scale, c)
            x += 6 * scale

    def png(self) -> bytes:
        return encode_png(self.w, self.h, bytes(self.buf))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png(width: int, height: int, scanlines: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"PLTE", PALETTE)
        + _chunk(b"IDAT", zlib.compress(scanlines, 1))
        + _chunk(b"IEND", b"")
    )


def draw_panel(
    cv: Canvas,
    x0: int,
    y0: int,
    x1: int,
    y1: int,
    seed: int,
    title: str,
    windows: list[tuple[float, float]] | None = None,
    color: int = BLUE,
    scatter: bool = False,
) -> None:
    """One ROOT-like pad: frame, ticks, a histogram (or scatter) and the title."""
    rng = random.Random(seed)
    cv.rect(x0, y0, x1, y1, BLACK, 2)
    left, right, top, bottom = x0 + 60, x1 - 20, y0 + 50, y1 - 40
    cv.fill(left, bottom, right, bottom + 2, BLACK)
    cv.fill(left - 2, top, left, bottom, BLACK)
    for i in range(11):
        tx = left + (right - left) * i // 10
        cv.fill(tx, bottom, tx + 2, bottom + 10, BLACK)
        ty = bottom - (bottom - top) * i // 10
        cv.fill(left - 10, ty, left, ty + 2, BLACK)
    cv.text(x0 + 12, y0 + 12, title, BLACK, 2)
    width = max(1, right - left)
    height = max(1, bottom - top - 10)
    bins = 80
    peak = rng.uniform(0.03, 0.06)
    if scatter:
        dot = bytes([color]) * 3
        buf, stride = cv.buf, cv.stride
        for _ in range(700):
            px = left + int(rng.random() * (width - 3))
            py = bottom - 3 - int(rng.random() ** 2.5 * (height - 3))
            i = py * stride + 1 + px
            buf[i : i + 3] = dot
            buf[i + stride : i + stride + 3] = dot
            buf[i + 2 * stride : i + 2 * stride + 3] = dot
    else:
        # Bars are drawn row by row from the bottom: one slice copy per row, and a bar's
        # columns are cleared from the row template once the row passes its top.
        bars = []
        for b in range(bins):
            frac = b / bins
            value = 0.15 + 0.7 * pow(2.718, -((frac - peak) ** 2) / 0.002) + 0.1 * rng.random()
            h = int(min(1.0, value) * height)
            bx0 = width * b // bins
            bx1 = width * (b + 1) // bins - 1
            bars.append((h, bx0, bx1))
        row = bytearray([WHITE]) * width
        for _h, bx0, bx1 in bars:
            row[bx0:bx1] = bytes([color]) * (bx1 - bx0)
        bars.sort()
        nxt = 0
        for level in range(1, max(h for h, _, _ in bars) + 1):
            while nxt < len(bars) and bars[nxt][0] < level:
                _h, bx0, bx1 = bars[nxt]
                row[bx0:bx1] = bytes([WHITE]) * (bx1 - bx0)
                nxt += 1
            y = bottom - level
            start = y * cv.stride + 1 + left
            cv.buf[start : start + width] = row
    for lo, hi in windows or []:
        for edge, c in ((lo, RED), (hi, BLUE)):
            ex = left + int(max(0.0, min(1.0, edge / 60.0)) * width)
            cv.fill(ex, top, ex + 2, bottom, c)


def plot_png(
    width: int,
    height: int,
    run: int,
    title: str,
    panels: int = 1,
    windows: list[tuple[float, float]] | None = None,
    salt: int = 0,
    label: str | None = None,
) -> bytes:
    """A plot of ``panels`` pads side by side, different for every run and salt."""
    cv = Canvas(width, height)
    pad_w = width // panels
    for i in range(panels):
        draw_panel(
            cv,
            i * pad_w + 2,
            2,
            (i + 1) * pad_w - 2,
            height - 2,
            seed=run * 131 + salt * 7 + i,
            title=title if i == 0 else f"run{run}",
            windows=windows,
            color=(BLUE, GREEN, PURPLE)[i % 3],
            scatter=(i % 2 == 1),
        )
    if label:
        cv.text(width - 12 * 2 * len(label) // 2 - 60, 14, label, RED, 2)
    return cv.png()


# ---------------------------------------------------------------------------------------
# PNG reading and PDF writing (the `convert` of the SL6 container)


class ImageError(ValueError):
    pass


@dataclass
class PngImage:
    width: int
    height: int
    bit_depth: int
    color_type: int
    palette: bytes
    idat: bytes


def read_png(data: bytes) -> PngImage:
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ImageError("improper image header")
    pos = 8
    width = height = depth = ctype = interlace = -1
    palette = b""
    idat: list[bytes] = []
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, ctype, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if width <= 0 or not idat:
        raise ImageError("corrupt image")
    if interlace != 0 or ctype in (4, 6) or depth not in (1, 2, 4, 8, 16):
        raise ImageError("unsupported PNG (interlace or alpha)")
    if ctype == 3 and not palette:
        raise ImageError("palette image without PLTE")
    return PngImage(width, height, depth, ctype, palette, b"".join(idat))


def _pdf_string(text: str) -> bytes:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("latin-1", "replace") + b")"


def write_pdf(images: list[PngImage], title: str) -> bytes:
    """A PDF 1.3 file: one page per image, page size = image size in points."""
    objects: dict[int, bytes] = {}
    page_ids: list[int] = []
    next_id = 4
    for img in images:
        page_id, content_id, image_id = next_id, next_id + 1, next_id + 2
        next_id += 3
        page_ids.append(page_id)
        colors = {0: 1, 2: 3, 3: 1}[img.color_type]
        if img.color_type == 3:
            n = len(img.palette) // 3
            colorspace = b"[/Indexed /DeviceRGB %d <%s>]" % (n - 1, img.palette.hex().encode())
        elif img.color_type == 2:
            colorspace = b"/DeviceRGB"
        else:
            colorspace = b"/DeviceGray"
        objects[image_id] = (
            b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace %s "
            b"/BitsPerComponent %d /Filter /FlateDecode /DecodeParms << /Predictor 15 "
            b"/Colors %d /BitsPerComponent %d /Columns %d >> /Length %d >>\nstream\n"
            % (
                img.width,
                img.height,
                colorspace,
                img.bit_depth,
                colors,
                img.bit_depth,
                img.width,
                len(img.idat),
            )
            + img.idat
            + b"\nendstream"
        )
        content = b"q\n%d 0 0 %d 0 0 cm\n/Im0 Do\nQ\n" % (img.width, img.height)
        objects[content_id] = b"<< /Length %d >>\nstream\n" % len(content) + content + b"endstream"
        objects[page_id] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Contents %d 0 R "
            b"/Resources << /XObject << /Im0 %d 0 R >> /ProcSet [/PDF /ImageC /ImageI] >> >>"
            % (img.width, img.height, content_id, image_id)
        )
    objects[1] = b"<< /Type /Catalog /Pages 2 0 R >>"
    kids = b" ".join(b"%d 0 R" % p for p in page_ids)
    objects[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_ids))
    stamp = time.strftime("D:%Y%m%d%H%M%S")
    objects[3] = (
        b"<< /Title "
        + _pdf_string(title)
        + b" /CreationDate ("
        + stamp.encode()
        + b") /ModDate ("
        + stamp.encode()
        + b") /Producer (ImageMagick 6.7.2-7 2017-03-22 Q16 http://www.imagemagick.org) >>"
    )
    out = bytearray(b"%PDF-1.3\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for oid in sorted(objects):
        offsets[oid] = len(out)
        out += b"%d 0 obj\n" % oid + objects[oid] + b"\nendobj\n"
    xref_at = len(out)
    size = max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for oid in range(1, size):
        out += b"%010d 00000 n \n" % offsets[oid]
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 3 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        size,
        xref_at,
    )
    return bytes(out)


def convert(args: list[str]) -> int:
    """`convert in1.png in2.png ... out.pdf` with ImageMagick's messages and exit codes."""
    import sys

    from simcommon import atomic_write, hook

    rc = hook(["convert"])
    if rc:
        return rc
    files = [a for a in args if not a.startswith("-")]
    if len(files) < 2:
        sys.stderr.write(
            "convert: missing an image filename `%s' @ error/convert.c/ConvertImageCommand/3016.\n"
            % (files[-1] if files else "")
        )
        return 1
    *inputs, output = files
    status = 0
    images: list[PngImage] = []
    for name in inputs:
        try:
            data = Path(name).read_bytes()
        except OSError:
            sys.stderr.write(
                f"convert: unable to open image `{name}': No such file or directory "
                "@ error/blob.c/OpenBlob/2589.\n"
            )
            status = 1
            continue
        try:
            images.append(read_png(data))
        except ImageError as exc:
            sys.stderr.write(f"convert: {exc} `{name}' @ error/png.c/ReadPNGImage/3667.\n")
            status = 1
    if not images:
        sys.stderr.write(
            f"convert: no images defined `{output}' @ error/convert.c/ConvertImageCommand/3046.\n"
        )
        return 1
    if not output.lower().endswith(".pdf"):
        sys.stderr.write(
            f"convert: no encode delegate for this image format `{output}' "
            "@ error/constitute.c/WriteImage/1153.\n"
        )
        return 1
    title = Path(output).name[: -len(".pdf")]
    atomic_write(Path(output), write_pdf(images, title))
    return status

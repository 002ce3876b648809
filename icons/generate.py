#!/usr/bin/env python3
"""Draws the Linzumi icons as RGBA PNGs with the standard library only.

The mark is a rounded square with a white "L" and a small status dot. The app icon
uses the brand colour; the tray icons use one colour per overall state so the state
reads at 16 px. Run it again after changing a colour: `python3 icons/generate.py`,
then make the macOS and Windows icons from icon.png with the Tauri CLI:
`tools/node_modules/.bin/tauri icon icons/icon.png -o /tmp/icons` and copy its
icon.icns and icon.ico here.
"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
BRAND = (0x5B, 0x4B, 0xE8)
STATES = {
    "tray-idle": (0x5B, 0x4B, 0xE8),
    "tray-working": (0x1E, 0x9E, 0x6A),
    "tray-attention": (0xE8, 0x8A, 0x1A),
    "tray-offline": (0x8A, 0x8F, 0x98),
}
SUPERSAMPLE = 4


def coverage(size, x, y):
    """Returns (background, glyph) coverage of pixel (x, y) in [0, 1]."""
    bg = glyph = 0
    for sy in range(SUPERSAMPLE):
        for sx in range(SUPERSAMPLE):
            u = (x + (sx + 0.5) / SUPERSAMPLE) / size
            v = (y + (sy + 0.5) / SUPERSAMPLE) / size
            if inside_rounded_square(u, v, 0.04, 0.22):
                bg += 1
                if inside_l(u, v):
                    glyph += 1
    n = SUPERSAMPLE * SUPERSAMPLE
    return bg / n, glyph / n


def inside_rounded_square(u, v, margin, radius):
    lo, hi = margin, 1 - margin
    if not (lo <= u <= hi and lo <= v <= hi):
        return False
    cx = min(max(u, lo + radius), hi - radius)
    cy = min(max(v, lo + radius), hi - radius)
    return (u - cx) ** 2 + (v - cy) ** 2 <= radius ** 2


def inside_l(u, v):
    stem = 0.30 <= u <= 0.44 and 0.24 <= v <= 0.76
    foot = 0.30 <= u <= 0.72 and 0.62 <= v <= 0.76
    return stem or foot


def png(size, colour):
    rows = []
    for y in range(size):
        row = bytearray([0])
        for x in range(size):
            bg, glyph = coverage(size, x, y)
            r, g, b = (
                round(c * (1 - glyph / bg) + 255 * (glyph / bg)) if bg else 0 for c in colour
            )
            row += bytes([r, g, b, round(255 * bg)])
        rows.append(bytes(row))
    raw = zlib.compress(b"".join(rows), 9)

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def write(name, size, colour):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(png(size, colour))


if __name__ == "__main__":
    # Every hicolor size the Linux packages install (menus, docks and the tray pick one).
    for size in (16, 24, 32, 48, 64, 128, 256):
        write(f"{size}x{size}.png", size, BRAND)
    write("icon.png", 512, BRAND)
    for name, colour in STATES.items():
        write(f"{name}.png", 64, colour)

"""Image files for the serving tests: real photographs, and hostile files crafted byte by byte."""

import io
import struct
import zlib

import numpy as np
from PIL import Image
from skimage import data as photos

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def photo(size=(32, 32), which="chelsea"):
    """A real photograph (scikit-image's cat or astronaut) resized to `size`, uint8 RGB."""
    source = {"chelsea": photos.chelsea, "astronaut": photos.astronaut, "coffee": photos.coffee}[which]()
    return np.asarray(Image.fromarray(source).resize(size[::-1], Image.BILINEAR))


def png_chunk(kind, payload):
    """One PNG chunk: length, type, payload, CRC-32 of type + payload (PNG specification §5.3)."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_header(width, height, bit_depth=8, color_type=2):
    return PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))


def png_declaring(width, height, idat=b"\x00" * 16):
    """A well-formed PNG (valid CRCs) that declares width x height RGB pixels but holds only `idat` compressed."""
    return png_header(width, height) + png_chunk(b"IDAT", zlib.compress(idat)) + png_chunk(b"IEND", b"")


def png_bomb(width=20_000, height=20_000):
    """A complete, valid PNG of width x height black RGB pixels in about 1 MB: it inflates to width*height*3 bytes.

    Built without ever holding the raw image: after a full flush deflate restarts, so the compressed form of one
    block of zero rows repeats; the zlib trailer is the Adler-32 of n zero bytes, (n mod 65521) << 16 | 1.
    """
    row = 1 + 3 * width  # filter byte + pixels
    rows_per_block = 100
    assert height % rows_per_block == 0
    block = b"\x00" * (row * rows_per_block)
    compressor = zlib.compressobj(9)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeat = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    total = row * height
    stream = first + repeat * (height // rows_per_block - 1) + b"\x03\x00"  # empty final fixed-Huffman block
    stream += struct.pack(">I", ((total % 65521) << 16) | 1)
    return png_header(width, height) + png_chunk(b"IDAT", stream) + png_chunk(b"IEND", b"")


def jpeg_declaring(width, height):
    """A real 8x8 JPEG whose SOF0 marker is rewritten to declare width x height: markers valid, scan data short."""
    data = bytearray(encode(np.zeros((8, 8, 3), np.uint8), "JPEG"))
    sof = data.find(b"\xff\xc0")
    assert sof > 0, "PIL wrote no baseline SOF0 marker"
    struct.pack_into(">HH", data, sof + 5, height, width)  # FFC0, length (2), precision (1), height, width
    return bytes(data)


def corrupt(data, start, length, seed=0):
    """`data` with `length` bytes from `start` replaced by random ones."""
    rng = np.random.default_rng(seed)
    data = bytearray(data)
    data[start : start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    return bytes(data)

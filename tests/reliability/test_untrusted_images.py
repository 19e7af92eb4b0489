"""The bytes signature against hostile files: each gets a clear InvalidArgumentError, nothing large is allocated,
and the next valid request is served as before."""

import io
import os
import re
import zlib

import numpy as np
import pytest
import tensorflow as tf

from keras_vitres.export import DEFAULT_MAX_PIXELS, declared_image_size, decode_image_batch
from tests.reliability import memory
from tests.reliability.images import (
    PNG_SIGNATURE,
    corrupt,
    encode,
    jpeg_declaring,
    photo,
    png_bomb,
    png_chunk,
    png_declaring,
    png_header,
)

MAX_GROWTH_MB = 64  # a 20,000 x 20,000 RGB image is 1,144 MiB decoded (4,578 MiB as float32)
NOT_JPEG_OR_PNG = "neither JPEG nor PNG"
TOO_LARGE = "max_pixels=16000000"


def _jpeg():
    return encode(photo((48, 64), "astronaut"), "JPEG", quality=90)


def _png():
    return encode(photo((48, 64), "coffee"), "PNG")


def _cases():
    """(id, bytes, pattern the error must match, what it is)."""
    jpeg, png = _jpeg(), _png()
    rng = np.random.default_rng(8)
    idat = png.find(b"IDAT")
    sos = jpeg.find(b"\xff\xda")
    return [
        ("empty", b"", NOT_JPEG_OR_PNG, "an empty string"),
        (
            "random_bytes",
            rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
            NOT_JPEG_OR_PNG,
            "4 KiB of random bytes",
        ),
        ("text", b"<html>not an image</html>", NOT_JPEG_OR_PNG, "a text file"),
        ("gif", encode(photo((32, 32)), "GIF"), NOT_JPEG_OR_PNG, "a GIF"),
        ("bmp", encode(photo((32, 32)), "BMP"), NOT_JPEG_OR_PNG, "a BMP"),
        ("tiff", encode(photo((32, 32)), "TIFF"), NOT_JPEG_OR_PNG, "a TIFF"),
        ("jpeg_magic_only", b"\xff\xd8\xff", "JPEG", "the 3 JPEG magic bytes alone"),
        ("png_magic_only", PNG_SIGNATURE, "PNG file is truncated or corrupt", "the 8 PNG magic bytes alone"),
        (
            "jpeg_magic_then_random",
            b"\xff\xd8\xff" + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
            "JPEG",
            "JPEG magic bytes followed by 4 KiB of random bytes",
        ),
        (
            "png_magic_then_random",
            PNG_SIGNATURE + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
            "PNG file is truncated or corrupt",
            "PNG magic bytes followed by 4 KiB of random bytes",
        ),
        ("truncated_jpeg_header", jpeg[: sos // 2], "JPEG", "a JPEG cut inside its header"),
        ("truncated_jpeg", jpeg[: len(jpeg) // 2], "JPEG", "a JPEG cut in half (inside the scan data)"),
        ("truncated_png_header", png[:20], "PNG file is truncated or corrupt", "a PNG cut inside IHDR"),
        ("truncated_png", png[: len(png) // 2], "PNG", "a PNG cut in half"),
        ("corrupt_jpeg_markers", corrupt(jpeg, 4, 64), "JPEG", "a JPEG whose markers are overwritten with noise"),
        ("corrupt_png_idat", corrupt(png, idat + 8, 64), "PNG", "a PNG with noise in its IDAT (CRC mismatch)"),
        (
            "png_without_ihdr",
            PNG_SIGNATURE + png_chunk(b"IEND", b"") * 3,
            "PNG file is truncated or corrupt",
            "a PNG whose first chunk is not IHDR",
        ),
        ("png_zero_width", png_declaring(0, 32), r"declares a size .*\[32 0\]", "a PNG declaring width 0"),
        ("png_20000x20000_tiny", png_declaring(20_000, 20_000), TOO_LARGE, "a 71-byte PNG declaring 20,000 x 20,000"),
        (
            "png_20000x20000_bomb",
            png_bomb(20_000, 20_000),
            TOO_LARGE,
            "a complete 1.1 MB PNG of 20,000 x 20,000 (1.2 GB decoded)",
        ),
        (
            "png_overflow",
            png_header(2**32 - 1, 2**32 - 1) + png_chunk(b"IEND", b""),
            TOO_LARGE,
            "a PNG declaring (2^32-1)^2 pixels (overflows int64)",
        ),
        (
            "jpeg_sof0_20000x20000",
            jpeg_declaring(20_000, 20_000),
            TOO_LARGE,
            "a 600-byte JPEG whose SOF0 declares 20,000 x 20,000",
        ),
        (
            "jpeg_sof0_65535x65535",
            jpeg_declaring(65_535, 65_535),
            "Invalid JPEG data",
            "a JPEG whose SOF0 declares 65,535 x 65,535 (above libjpeg's own 65,500)",
        ),
    ]


CASES = _cases()


def short_message(error):
    """The useful line of a TensorFlow error message: the assertion or decoder message, without graph details."""
    noise = ("Graph execution error", "Detected at node", "<stack traces", "[[", "File ")
    lines = [line.strip() for line in getattr(error, "message", str(error)).splitlines()]
    lines = [line for line in lines if line and not line.startswith(noise)] or ["(no message)"]
    text = re.sub(r"\{\{function_node [^}]*\}\}|\[\[\{\{node [^]]*\]\]|\[Op:[^]]*\]", "", lines[0])
    return " ".join(text.replace("assertion failed: ", "").split())[:240]


@pytest.fixture(scope="module")
def valid(served):
    """A valid request and its answer, computed before any hostile input is seen."""
    files = tf.constant([_jpeg(), _png()])
    return files, served.serve_bytes(image_bytes=files)["probabilities"].numpy()


@pytest.mark.parametrize("name, data, pattern, what", CASES, ids=[c[0] for c in CASES])
def test_hostile_image_gets_a_clear_error_and_the_next_request_works(
    served, valid, name, data, pattern, what, record_property
):
    files, expected = valid
    outcome, growth = memory.peak_growth_mb(lambda: served.serve_bytes(image_bytes=tf.constant([data])))
    assert isinstance(outcome, tf.errors.InvalidArgumentError), f"{what}: expected an error, got {outcome!r}"
    message = short_message(outcome)
    assert pattern in message or re.search(pattern, message), message
    record_property("input", what)
    record_property("outcome", f"InvalidArgumentError: {message}")
    if memory.available():
        record_property("rss_growth_mb", round(growth, 1))
        assert growth < MAX_GROWTH_MB, f"{what}: resident memory rose by {growth:.0f} MiB"
    # Inside a batch with valid images the whole request fails (TF Serving semantics), then service goes on. The
    # package's own checks say which image it was; TensorFlow's decoder errors cannot.
    with pytest.raises(tf.errors.InvalidArgumentError) as in_batch:
        served.serve_bytes(image_bytes=tf.constant([files[0].numpy(), files[1].numpy(), data]))
    if message.startswith("[Image] [0] [of the batch:]"):
        assert short_message(in_batch.value).startswith("[Image] [2] [of the batch:]"), short_message(in_batch.value)
    np.testing.assert_array_equal(served.serve_bytes(image_bytes=files)["probabilities"].numpy(), expected)


def test_bomb_without_the_limit_would_allocate_gigabytes():
    """The control experiment: TensorFlow alone decodes the 1.1 MB PNG into 1.2 GB (so the limit is what stops it)."""
    bomb = png_bomb(20_000, 20_000)
    assert len(bomb) < 1_300_000
    height, width = declared_image_size(tf.constant(bomb)).numpy()
    assert (height, width) == (20_000, 20_000)
    np.testing.assert_array_equal(declared_image_size(tf.constant(_jpeg())).numpy(), [48, 64])
    # Decoding it for real would take 1.2 GB and seconds; TensorFlow's own limits do not stop it. Checked on a
    # smaller bomb of the same construction: it decodes completely to black pixels.
    small = tf.io.decode_png(png_bomb(2_000, 1_000), channels=3)
    assert small.shape == (1_000, 2_000, 3) and int(tf.reduce_max(small)) == 0


@pytest.mark.parametrize("max_pixels", [32 * 32, 48 * 64])
def test_limit_is_exact_and_configurable(max_pixels):
    decode = tf.function(lambda b: decode_image_batch(b, (32, 32), max_pixels=max_pixels))
    at_limit = encode(photo((32, max_pixels // 32)), "PNG")
    assert decode(tf.constant([at_limit])).shape == (1, 32, 32, 3)
    for over in [encode(photo((33, max_pixels // 32)), "PNG"), encode(photo((32, max_pixels // 32 + 1)), "JPEG")]:
        with pytest.raises(tf.errors.InvalidArgumentError, match=f"max_pixels={max_pixels}"):
            decode(tf.constant([over]))
    assert DEFAULT_MAX_PIXELS == 16_000_000


def test_export_records_its_pixel_limit(served):
    from keras_vitres.export import read_export_metadata

    meta = read_export_metadata(served.path)
    assert meta["max_pixels"] == DEFAULT_MAX_PIXELS
    assert "at most 16000000 pixels" in meta["signatures"]["serving_bytes"]["inputs"]["image_bytes"]


def test_max_pixels_argument_is_checked(tmp_path):
    import keras_vitres

    model = keras_vitres.ResNet(8, stem="cifar")
    for bad in [0, -1, 1.5, True, "16M", None, 2**62]:
        with pytest.raises(ValueError, match=re.escape(f"max_pixels={bad!r}")):
            keras_vitres.export_saved_model(model, tmp_path, max_pixels=bad)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "mode, fmt",
    [("L", "PNG"), ("L", "JPEG"), ("RGBA", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("I;16", "PNG")],
    ids=["gray_png", "gray_jpeg", "rgba_png", "gray_alpha_png", "palette_png", "gray16_png"],
)
def test_grayscale_alpha_and_palette_images_become_rgb(served, mode, fmt):
    from PIL import Image

    rgb = photo((32, 32), "chelsea")
    image = Image.fromarray(rgb)
    if mode == "RGBA":
        image = Image.fromarray(np.dstack([rgb, np.full((32, 32), 100, np.uint8)]), "RGBA")
    elif mode == "I;16":
        image = Image.fromarray(np.asarray(image.convert("L"), np.uint16) * 257)
    else:
        image = image.convert(mode)
    data = encode(np.asarray(image), fmt) if mode not in ("P", "I;16") else _save(image, fmt)
    decoded = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8).numpy()
    if mode in ("L", "LA", "I;16"):
        assert np.array_equal(decoded[..., 0], decoded[..., 1]) and np.array_equal(decoded[..., 0], decoded[..., 2])
    if mode == "RGBA":
        np.testing.assert_array_equal(decoded, rgb)  # alpha dropped, colours kept
    served_bytes = served.serve_bytes(image_bytes=tf.constant([data]))["probabilities"].numpy()
    served_float = served.serve(images=tf.constant(decoded[None], tf.float32))["probabilities"].numpy()
    np.testing.assert_allclose(served_bytes, served_float, atol=1e-6, rtol=0)


def _save(image, fmt):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("variant", ["progressive", "cmyk", "exif_rotated", "png_16bit_rgb"])
def test_other_valid_encodings_are_served(served, variant):
    from PIL import Image

    image = Image.fromarray(photo((32, 32), "astronaut"))
    buffer = io.BytesIO()
    if variant == "progressive":
        image.save(buffer, "JPEG", progressive=True, quality=90)
    elif variant == "cmyk":
        image.convert("CMYK").save(buffer, "JPEG", quality=90)
    elif variant == "exif_rotated":
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 degrees; decoders (and the signature) ignore it
        image.save(buffer, "JPEG", exif=exif.tobytes())
    else:
        rgb16 = (np.asarray(image, np.uint16) * 257).astype(">u2")
        raw = b"".join(b"\x00" + row.tobytes() for row in rgb16)
        buffer.write(
            png_header(32, 32, bit_depth=16) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")
        )
    answer = served.serve_bytes(image_bytes=tf.constant([buffer.getvalue()]))
    assert answer["probabilities"].shape == (1, 10)
    np.testing.assert_allclose(answer["probabilities"].numpy().sum(), 1.0, atol=1e-5)

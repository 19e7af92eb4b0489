"""The NumPy/PIL image path of `keras-vitres predict` against the SavedModel's TensorFlow one: the same checks, the
same pixels, the same refusals."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_vitres.data.geometry import resize_and_crop as tf_resize_and_crop
from keras_vitres.export.images import KERNELS, check_image_bytes, decode_rgb, resize_and_crop, scale_and_translate
from tests.helpers import sample_photos
from tests.reliability import memory
from tests.reliability.images import photo, png_bomb
from tests.reliability.test_untrusted_images import CASES, NOT_JPEG_OR_PNG, TOO_LARGE

# The resize sums a row of at most 2 * radius * shrink + 1 weighted pixels in float32, in another order than
# TensorFlow's kernel: a few float32 roundings of values up to 255 per pass, two passes.
RESIZE_TOLERANCE = 2e-4


def encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def tf_decode(data):
    return tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8).numpy()


@pytest.fixture(scope="module")
def photo_files():
    return {name: {fmt: encode(Image.fromarray(p), fmt, quality=90) for fmt in ("PNG", "JPEG")}
            for name, p in sample_photos().items()}


def variant_file(variant):
    """A real photo in one of the PNG modes (grayscale, with alpha, palette, 16-bit) or JPEG encodings."""
    rgb = photo((32, 32), "chelsea")
    image = Image.fromarray(rgb)
    if variant == "RGBA":
        image = Image.fromarray(np.dstack([rgb, np.full((32, 32), 100, np.uint8)]), "RGBA")
    elif variant == "I;16":
        image = Image.fromarray(np.asarray(image.convert("L"), np.uint16) * 257)
    elif variant in ("L", "LA", "P"):
        image = image.convert(variant)
    if variant == "progressive":
        data = encode(image, "JPEG", progressive=True, quality=90)
    elif variant == "cmyk":
        data = encode(image.convert("CMYK"), "JPEG", quality=90)
    else:
        data = encode(image, "PNG")
    return data


def test_decoded_pixels_are_tensorflows(photo_files):
    """PNG through PIL and JPEG through TensorFlow's decoder: the bytes signature's pixels, exactly, for the photos
    and for every PNG mode and JPEG encoding. PIL's JPEG decoder (the accurate IDCT) differs from TensorFlow's
    default (the fast one) by a few levels, which is why it is only the fallback."""
    for name, files in photo_files.items():
        np.testing.assert_array_equal(decode_rgb(files["PNG"]), tf_decode(files["PNG"]), err_msg=name)
        np.testing.assert_array_equal(decode_rgb(files["JPEG"]), tf_decode(files["JPEG"]), err_msg=name)
        pil = decode_rgb(files["JPEG"], jpeg_decoder="pil").astype(int)
        assert 0 < np.abs(pil - tf_decode(files["JPEG"])).max() <= 8, name
        np.testing.assert_array_equal(pil, tf.io.decode_jpeg(files["JPEG"], dct_method="INTEGER_ACCURATE").numpy())
    for variant in ("L", "LA", "RGBA", "P", "I;16", "progressive", "cmyk"):  # every mode becomes the same RGB
        data = variant_file(variant)
        np.testing.assert_array_equal(decode_rgb(data), tf_decode(data), err_msg=variant)


def test_resize_is_tensorflows_scale_and_translate(photo_files):
    """Every kernel, shrinking (a few to 16 times, different factors per axis) and enlarging, against
    `tf.image.resize`."""
    image = decode_rgb(photo_files["chelsea"]["PNG"]).astype(np.float32)  # 300 x 451
    cases = [(m, (19, 301)) for m in sorted(KERNELS)] + [(m, s) for m in ("bilinear", "bicubic")
                                                          for s in [(32, 48), (224, 224), (600, 700)]]
    for method, size in cases:
        expected = tf.image.resize(image, size, method=method, antialias=True).numpy()
        np.testing.assert_allclose(scale_and_translate(image, size, method), expected, atol=RESIZE_TOLERANCE, rtol=0,
                                   err_msg=f"{method} {size}")


def test_crop_is_the_evaluation_crop(photo_files):
    image = decode_rgb(photo_files["astronaut"]["JPEG"]).astype(np.float32)[:, 40:]  # 512 x 472: not square
    for size, crop in [((32, 32), 1.0), ((224, 224), 0.875), ((48, 40), 0.9), ((300, 451), 1.0)]:
        expected = tf_resize_and_crop(tf.constant(image), size, crop, method="bilinear").numpy()
        np.testing.assert_allclose(resize_and_crop(image, size, crop), expected, atol=RESIZE_TOLERANCE, rtol=0,
                                   err_msg=f"{size} {crop}")
    original = decode_rgb(photo_files["chelsea"]["PNG"])  # no resize needed: the pixels themselves
    np.testing.assert_array_equal(resize_and_crop(original, (300, 451)), original)


def kind(pattern):
    """The refusal the serving guard gives, as the words the NumPy path says it with."""
    if pattern == NOT_JPEG_OR_PNG:
        return "neither JPEG nor PNG"
    if pattern == TOO_LARGE:
        return "max_pixels=16000000"
    if pattern.startswith("declares a size"):
        return "declares a size"
    return "truncated or corrupt"


def test_hostile_images_are_refused_as_the_serving_guard_refuses_them():
    """The reliability suite's hostile files: each gets a ValueError saying what the serving signature says. One
    difference: a JPEG declaring 65,535 x 65,535 is refused for its declared size here (its header is read byte by
    byte), where TensorFlow's header reader already calls it invalid (above libjpeg's 65,500)."""
    assert len(CASES) >= 20
    for name, data, pattern, what in CASES:
        expected = {"jpeg_sof0_65535x65535": "max_pixels=16000000"}.get(name, kind(pattern))
        outcome, growth = memory.peak_growth_mb(lambda data=data: decode_rgb(data))
        assert isinstance(outcome, ValueError) and expected in str(outcome), f"{what}: {outcome!r}"
        if memory.available():  # the 1.1 MB PNG of 20,000 x 20,000 pixels would take 1.2 GB decoded
            assert growth < 64, f"{what}: resident memory rose by {growth:.0f} MiB"
    small = png_bomb(2_000, 1_000)  # the same construction as the bomb, smaller: it decodes, to black
    assert check_image_bytes(small).size == (2_000, 1_000) and decode_rgb(small).max() == 0
    with pytest.raises(ValueError, match="max_pixels=1999999"):
        decode_rgb(small, max_pixels=1_999_999)

"""In-graph decoding of encoded images for the bytes signature: JPEG or PNG bytes -> resized float32 pixels.

TF Serving's REST API turns `{"b64": "..."}` into the raw bytes of a `tf.string` tensor, so clients can send image
files as they are; this is the graph that makes them model inputs. The bytes come from strangers, so the graph
checks them before it decodes anything:

1. the format, from the magic bytes: JPEG (`FF D8 FF`) or PNG (`89 50 4E 47 0D 0A 1A 0A`), nothing else;
2. the size the file declares, from its header: `tf.io.extract_jpeg_shape` (the SOF marker) for JPEG, the
   IHDR chunk (width and height, big-endian, bytes 16..24) for PNG;
3. that size against `max_pixels`, so a small file that declares a huge image (a 1 MB PNG inflates to 20,000 x
   20,000 x 3 = 1.2 GB) is refused without allocating it.
Only then is the image decoded, converted to RGB (grayscale and RGBA included), resized and centre-cropped as the
evaluation pipeline does (`keras_vitres.data.geometry.resize_and_crop`). The images of a batch
are decoded one at a time, so the memory a request needs is bounded by `max_pixels`, whatever its batch size.
"""

from keras_vitres.data.geometry import resize_and_crop
from keras_vitres.export.images import DEFAULT_MAX_PIXELS, JPEG_MAGIC, PNG_MAGIC

RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")
PNG_HEADER_BYTES = 24  # signature (8), IHDR length (4), "IHDR" (4), width (4), height (4)


def check_resize_method(resize_method):
    if resize_method not in RESIZE_METHODS:
        raise ValueError(f"`resize_method` must be one of {RESIZE_METHODS}; received resize_method={resize_method!r}.")


def check_max_pixels(max_pixels):
    """Returns `max_pixels` as an int, or raises a ValueError naming the value."""
    if not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or not 1 <= max_pixels < 2**62:
        raise ValueError(
            "`max_pixels` must be a positive int, the largest height x width an image may declare (default "
            f"{DEFAULT_MAX_PIXELS:,}); received max_pixels={max_pixels!r}."
        )
    return max_pixels


def _which(index):
    """The start of an assertion's message: which image of the request failed (TF Serving fails the whole batch)."""
    return [] if index is None else ["Image", index, "of the batch:"]


def _png_declared_size(data, index=None):
    """(height, width) as int64 from a PNG's IHDR chunk, after checking that the chunk is where it must be."""
    import tensorflow as tf

    # Padded, so that reading bytes 12..24 of a shorter string is not an out-of-range error (whose message would
    # quote the client's raw bytes); the length is checked explicitly instead.
    padded = tf.strings.join([data, b"\0" * PNG_HEADER_BYTES])
    has_header = tf.logical_and(
        tf.greater_equal(tf.strings.length(data), PNG_HEADER_BYTES),
        tf.equal(tf.strings.substr(padded, 12, 4), b"IHDR"),
    )
    check = tf.debugging.Assert(
        has_header,
        [*_which(index), "The PNG file is truncated or corrupt: its first chunk is not a complete IHDR header "
         "(bytes 12..24)."],
    )
    with tf.control_dependencies([check]):
        # Width then height, 4 bytes each, big-endian (PNG specification §11.2.2).
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 16, 8), tf.uint8), tf.int64)
    weights = tf.constant([2**24, 2**16, 2**8, 1], tf.int64)
    width = tf.reduce_sum(raw[:4] * weights)
    height = tf.reduce_sum(raw[4:8] * weights)
    return tf.stack([height, width])


def _jpeg_declared_size(data):
    import tensorflow as tf

    return tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64)  # reads the markers only, never the scan data


def declared_image_size(data, index=None):
    """Checks the magic bytes of one string tensor and returns the (height, width) its header declares (int64).

    Nothing is decoded: JPEG sizes come from `tf.io.extract_jpeg_shape`, PNG sizes from the IHDR chunk. Anything
    that is neither JPEG nor PNG (GIF, BMP, WebP, random bytes, an empty string) raises an InvalidArgumentError
    when the graph runs; its message starts with "Image {index} of the batch" when `index` (a scalar tensor) is
    given.
    """
    import tensorflow as tf

    is_jpeg = tf.equal(tf.strings.substr(data, 0, len(JPEG_MAGIC)), JPEG_MAGIC)
    is_png = tf.equal(tf.strings.substr(data, 0, len(PNG_MAGIC)), PNG_MAGIC)
    check = tf.debugging.Assert(
        tf.logical_or(is_jpeg, is_png),
        [*_which(index), "The image bytes are neither JPEG nor PNG; the bytes signature accepts JPEG and PNG files "
         "only."],
    )
    with tf.control_dependencies([check]):
        return tf.cond(is_jpeg, lambda: _jpeg_declared_size(data), lambda: _png_declared_size(data, index))


def decode_image(data, image_size, channels=3, resize_method="bilinear", antialias=True, max_pixels=DEFAULT_MAX_PIXELS,
                 crop_fraction=1.0, index=None):
    """Decodes one JPEG or PNG string tensor into a float32 (H, W, channels) tensor in [0, 255].

    The format is checked from the magic bytes and the declared size from the header before anything is decoded
    (see the module docstring); an image that declares more than `max_pixels` pixels is refused. Grayscale and
    RGBA images are converted to `channels`. The image is then resized and cropped exactly as evaluation does
    (`keras_vitres.data.geometry.resize_and_crop`: resized, aspect kept, to cover `image_size / crop_fraction`,
    then the central `image_size`; no resize, hence exact pixels, when nothing needs one). `index`, a scalar
    tensor, is the image's place in its batch, named by the error messages of the checks.
    """
    import tensorflow as tf

    size = declared_image_size(data, index)
    height, width = size[0], size[1]
    # height * width <= max_pixels, written with a division: a PNG may declare up to 2**32 - 1 per side, whose
    # product would overflow int64 and wrap to a small number.
    fits = tf.logical_and(
        tf.reduce_all(size > 0), height <= tf.math.floordiv(tf.constant(max_pixels, tf.int64), tf.maximum(width, 1))
    )
    check = tf.debugging.Assert(
        fits,
        [
            *_which(index),
            "The image declares a size of (height, width) =",
            size,
            f"in its header; the bytes signature accepts images of 1 to max_pixels={max_pixels} pixels "
            "(height x width), so it was refused before decoding.",
        ],
    )
    with tf.control_dependencies([check]):
        image = tf.io.decode_image(data, channels=channels, expand_animations=False, dtype=tf.uint8)
    image = tf.cast(tf.ensure_shape(image, (None, None, channels)), tf.float32)
    image = resize_and_crop(image, image_size, crop_fraction, method=resize_method, antialias=antialias)
    return tf.ensure_shape(image, (*image_size, channels))


def decode_image_batch(
    image_bytes, image_size, channels=3, resize_method="bilinear", antialias=True, max_pixels=DEFAULT_MAX_PIXELS,
    crop_fraction=1.0,
):
    """Decodes a (batch,) string tensor of JPEG/PNG files into a float32 (batch, H, W, channels) tensor.

    The images are decoded one after the other (`parallel_iterations=1`), so at most one full-size image is in
    memory at a time. A check that fails names the image by its index in the batch (TensorFlow's own decoder
    errors, for a file whose header passes but whose data is broken, do not).
    """
    import tensorflow as tf

    image_size = tuple(int(s) for s in image_size)
    max_pixels = check_max_pixels(max_pixels)
    indices = tf.range(tf.shape(image_bytes, out_type=tf.int64)[0])
    return tf.map_fn(
        lambda item: decode_image(item[0], image_size, channels, resize_method, antialias, max_pixels, crop_fraction,
                                  index=item[1]),
        (image_bytes, indices),
        fn_output_signature=tf.TensorSpec((*image_size, channels), tf.float32),
        parallel_iterations=1,
    )


def resize_like_serving(image, image_size, resize_method="bilinear", antialias=True, crop_fraction=1.0):
    """Crops and resizes a decoded (H, W, C) image exactly as the bytes signature does; returns a float32 NumPy
    array.

    Clients that decode images themselves and call the float signature use this to get identical inputs.
    """
    import numpy as np
    import tensorflow as tf

    image = tf.cast(tf.convert_to_tensor(image), tf.float32)
    image = resize_and_crop(image, tuple(image_size), crop_fraction, method=resize_method, antialias=antialias)
    return np.asarray(image, np.float32)

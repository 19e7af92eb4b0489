"""In-graph decoding of encoded images for the bytes signature: JPEG or PNG bytes -> resized float32 pixels.

TF Serving's REST API turns `{"b64": "..."}` into the raw bytes of a `tf.string` tensor, so clients can send image
files as they are; this is the graph that makes them model inputs.
"""

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian", "mitchellcubic")


def check_resize_method(resize_method):
    if resize_method not in RESIZE_METHODS:
        raise ValueError(f"`resize_method` must be one of {RESIZE_METHODS}; received resize_method={resize_method!r}.")


def decode_image(data, image_size, channels=3, resize_method="bilinear", antialias=True):
    """Decodes one JPEG or PNG string tensor into a float32 (H, W, channels) tensor in [0, 255].

    The format is checked from the magic bytes first, so GIF, BMP, WebP or random bytes get an error that says
    what is accepted. Grayscale and RGBA images are converted to `channels`. The image is resized to
    `image_size` (no resize, hence exact pixels, when it already has that size).
    """
    import tensorflow as tf

    is_jpeg = tf.equal(tf.strings.substr(data, 0, len(JPEG_MAGIC)), JPEG_MAGIC)
    is_png = tf.equal(tf.strings.substr(data, 0, len(PNG_MAGIC)), PNG_MAGIC)
    check = tf.debugging.Assert(
        tf.logical_or(is_jpeg, is_png),
        ["The image bytes are neither JPEG nor PNG; the bytes signature accepts JPEG and PNG files only."],
    )
    with tf.control_dependencies([check]):
        image = tf.io.decode_image(data, channels=channels, expand_animations=False, dtype=tf.uint8)
    image = tf.cast(tf.ensure_shape(image, (None, None, channels)), tf.float32)
    same_size = tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.constant(image_size, tf.int32)))
    image = tf.cond(
        same_size,
        lambda: image,
        lambda: tf.image.resize(image, image_size, method=resize_method, antialias=antialias),
    )
    return tf.ensure_shape(image, (*image_size, channels))


def decode_image_batch(image_bytes, image_size, channels=3, resize_method="bilinear", antialias=True):
    """Decodes a (batch,) string tensor of JPEG/PNG files into a float32 (batch, H, W, channels) tensor."""
    import tensorflow as tf

    image_size = tuple(int(s) for s in image_size)
    return tf.map_fn(
        lambda data: decode_image(data, image_size, channels, resize_method, antialias),
        image_bytes,
        fn_output_signature=tf.TensorSpec((*image_size, channels), tf.float32),
    )


def resize_like_serving(image, image_size, resize_method="bilinear", antialias=True):
    """Resizes a decoded (H, W, C) image exactly as the bytes signature does; returns a float32 NumPy array.

    Clients that decode images themselves and call the float signature use this to get identical inputs.
    """
    import numpy as np
    import tensorflow as tf

    image = tf.cast(tf.convert_to_tensor(image), tf.float32)
    if tuple(image.shape[:2]) != tuple(image_size):
        image = tf.image.resize(image, tuple(image_size), method=resize_method, antialias=antialias)
    return np.asarray(image, np.float32)

"""Image files -> model inputs without TensorFlow: the bytes signature's checks, decoding and resize, in NumPy and PIL.

`keras-vitres predict` runs exports in runtimes that cannot decode images (ONNX Runtime, OpenVINO, LiteRT), so it
prepares their float pixels itself, as the SavedModel's `serving_bytes` graph does (`export.decoding`):

1. the format from the magic bytes (JPEG or PNG, nothing else), and the size the header declares (the JPEG frame
   marker, the PNG IHDR chunk, read here byte by byte) against `max_pixels`, before anything is decoded;
2. decoding to RGB as `tf.io.decode_image(channels=3)` does: grayscale repeated, alpha and palette dropped to their
   colours, 16-bit samples to their high byte;
3. the evaluation crop of `data.geometry.resize_and_crop`: resize (aspect kept) to cover `image_size /
   crop_fraction`, then the central `image_size`. The resize is TensorFlow's antialiased `ScaleAndTranslate`
   written out (`scale_and_translate`): for each output pixel, a kernel scaled by the shrink factor, centred on
   (i + 0.5) / scale, weights normalised to sum to 1, rows first, then columns, in float32.

PNG decoding is lossless, so PIL's pixels equal TensorFlow's. JPEG decoders differ: TensorFlow's default is
libjpeg's fast integer IDCT, PIL's the accurate one (up to 8 levels apart), so JPEG files are decoded with TensorFlow
when it is installed (it always is with keras-vitres) and with PIL otherwise (`jpeg_decoder`). The resize sums in
another order than TensorFlow's kernel: within 2e-4 of it on [0, 255] pixels (tests/export/test_images.py).
"""

import io
import math

import numpy as np

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DEFAULT_MAX_PIXELS = 16_000_000  # 16 megapixels: a 4,900 x 3,260 photo; about 16 bytes per pixel while decoding
JPEG_DECODERS = ("auto", "tensorflow", "pil")
SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # frame headers
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# ScaleAndTranslate's kernels (tensorflow/core/kernels/image/sampling_kernels.h): name -> (radius, kernel on |x|).
KERNELS = {
    "bilinear": (1.0, lambda x: np.maximum(0.0, 1.0 - x)),  # the triangle
    "bicubic": (2.0, lambda x: np.where(  # Keys' cubic, a = -0.5 (IEEE TASSP 29(6), 1981)
        x < 1.0, (1.5 * x - 2.5) * x * x + 1.0, np.where(x < 2.0, ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0, 0.0))),
    "mitchellcubic": (2.0, lambda x: np.where(  # Mitchell & Netravali (SIGGRAPH 1988), B = C = 1/3
        x < 1.0, ((7 / 6) * x - 2.0) * x * x + 8 / 9,
        np.where(x < 2.0, (((-7 / 18) * x + 2.0) * x - 10 / 3) * x + 16 / 9, 0.0))),
    "lanczos3": (3.0, lambda x: _lanczos(x, 3.0)),
    "lanczos5": (5.0, lambda x: _lanczos(x, 5.0)),
    "gaussian": (1.5, lambda x: np.where(x < 1.5, np.exp(-x * x / (2 * 0.5**2)), 0.0)),  # sigma = radius / 3
}


def _lanczos(x, radius):
    with np.errstate(divide="ignore", invalid="ignore"):
        value = radius * np.sin(np.pi * x) * np.sin(np.pi * x / radius) / (np.pi**2 * x * x)
    return np.where(x <= 1e-3, 1.0, np.where(x > radius, 0.0, value))


def _png_size(data):
    """(height, width) from the IHDR chunk, which must come first (PNG specification §5.6, §11.2.2)."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ValueError("The PNG file is truncated or corrupt: its first chunk is not a complete IHDR header "
                         "(bytes 12..24).")
    return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")


def _jpeg_size(data):
    """(height, width) from the first start-of-frame marker, walking the marker segments (ITU T.81 §B.1.1)."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            break
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            position += 2
            continue
        if marker in SOF_MARKERS and position + 9 <= len(data):
            return int.from_bytes(data[position + 5 : position + 7], "big"), \
                int.from_bytes(data[position + 7 : position + 9], "big")
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    raise ValueError("The JPEG file is truncated or corrupt: no frame header (SOF marker) before its data.")


def declared_size(data):
    """Checks the magic bytes of an image file and returns the (height, width) its header declares, without decoding
    anything (the JPEG SOF marker, the PNG IHDR chunk).

    Raises:
        ValueError: neither JPEG nor PNG, or a header that is truncated or corrupt.
    """
    if data.startswith(PNG_MAGIC):
        return _png_size(data)
    if data.startswith(JPEG_MAGIC):
        return _jpeg_size(data)
    raise ValueError("The image bytes are neither JPEG nor PNG; JPEG and PNG files only are accepted.")


def check_image_bytes(data, max_pixels=DEFAULT_MAX_PIXELS):
    """Opens JPEG or PNG bytes after checking their magic bytes and declared size; returns the (unloaded) PIL image.

    Raises:
        ValueError: neither JPEG nor PNG; a header that is truncated or corrupt; a declared size of zero or of
            more than `max_pixels` (height x width) pixels. Nothing has been decoded when it raises.
    """
    from PIL import Image

    height, width = declared_size(data)
    if not (height >= 1 and width >= 1 and height * width <= max_pixels):
        raise ValueError(
            f"The image declares a size of (height, width) = ({height}, {width}) in its header; images of 1 to "
            f"max_pixels={max_pixels} pixels (height x width) are accepted, so it was refused before decoding."
        )
    kind = "PNG" if data.startswith(PNG_MAGIC) else "JPEG"
    try:
        return Image.open(io.BytesIO(data), formats=[kind])
    except Image.UnidentifiedImageError:
        raise ValueError(f"The {kind} file is truncated or corrupt: its header cannot be read.") from None
    except Exception as error:  # PIL raises several types for a broken header
        raise ValueError(f"The {kind} file is truncated or corrupt: its header cannot be read ({error}).") from None


def decode_rgb(data, max_pixels=DEFAULT_MAX_PIXELS, jpeg_decoder="auto"):
    """Decodes checked JPEG or PNG bytes to a uint8 (H, W, 3) RGB array, as `tf.io.decode_image(channels=3)`.

    Args:
        data: bytes of a JPEG or PNG file.
        max_pixels: int. The largest height x width the header may declare.
        jpeg_decoder: "tensorflow" (TensorFlow's decoder: the bytes signature's pixels exactly, whose default IDCT is
            libjpeg's fast integer one), "pil" (PIL's libjpeg-turbo with the accurate integer IDCT: pixels differ by up
            to 8 levels, by about 0.5 on average) or "auto" (TensorFlow when it is installed).

    Raises:
        ValueError: as `check_image_bytes`, or when the file's data is truncated or corrupt.
    """
    image = check_image_bytes(data, max_pixels)
    if image.format == "JPEG" and _use_tensorflow(jpeg_decoder):
        import tensorflow as tf

        try:
            return tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8).numpy()
        except tf.errors.InvalidArgumentError as error:
            raise ValueError(f"The JPEG file is truncated or corrupt: {error.message.splitlines()[0]}") from None
    try:
        image.load()
    except Exception as error:
        raise ValueError(f"The {image.format} file is truncated or corrupt: {error}.") from None
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grayscale: keep the high byte, as libpng's strip
        gray = (np.asarray(image, np.uint32) >> 8).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode in ("RGBA", "LA", "PA"):
        image = image.convert(image.mode[:-1] if image.mode != "PA" else "P")  # drop alpha, keep the colours
    return np.asarray(image.convert("RGB"), np.uint8)


def _use_tensorflow(jpeg_decoder):
    if jpeg_decoder not in JPEG_DECODERS:
        raise ValueError(f"`jpeg_decoder` must be one of {JPEG_DECODERS}; received jpeg_decoder={jpeg_decoder!r}.")
    if jpeg_decoder != "auto":
        return jpeg_decoder == "tensorflow"
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


def _spans(output_size, input_size, method, antialias):
    """ScaleAndTranslate's (output, input) weight matrix for one axis, with its float32 arithmetic."""
    radius, kernel = KERNELS[method]
    scale = np.float32(output_size) / np.float32(input_size)
    inv_scale = np.float32(1.0 / float(scale))
    kernel_scale = max(inv_scale, np.float32(1.0)) if antialias else np.float32(1.0)
    weights = np.zeros((output_size, input_size), np.float32)
    samples = (np.arange(output_size, dtype=np.float32) + np.float32(0.5)) * inv_scale
    reach = np.float32(radius) * kernel_scale
    for x, sample in enumerate(samples):
        start = min(max(math.ceil(sample - reach - np.float32(0.5)), 0), input_size - 1)
        end = min(max(math.floor(sample + reach - np.float32(0.5)), 0), input_size - 1) + 1
        position = np.arange(start, end, dtype=np.float32) + np.float32(0.5) - sample
        w = kernel(np.abs(position * (np.float32(1.0) / kernel_scale))).astype(np.float32)
        total = w.sum(dtype=np.float32)
        if abs(total) >= 1000 * np.finfo(np.float32).tiny:
            weights[x, start:end] = w * (np.float32(1.0) / total)
    return weights


def scale_and_translate(image, size, method="bilinear", antialias=True):
    """Resizes a (H, W, C) image to `size` as `tf.image.resize(image, size, method, antialias=True)` does, in float32.

    Only the kernel methods of TensorFlow's `ScaleAndTranslate` are supported ("bilinear", "bicubic",
    "mitchellcubic", "lanczos3", "lanczos5", "gaussian"); "nearest" and "area" raise a ValueError.
    """
    if method not in KERNELS or not antialias:
        raise ValueError(
            f"Resizing without TensorFlow supports the antialiased kernel methods {tuple(KERNELS)}; received "
            f"resize_method={method!r}, antialias={antialias!r}. Use the SavedModel's serving_bytes signature instead."
        )
    image = np.asarray(image, np.float32)
    (height, width, channels), (out_h, out_w) = image.shape, size
    rows = _spans(out_h, height, method, antialias) @ image.reshape(height, width * channels)  # BLAS, float32
    rows = rows.reshape(out_h, width, channels).transpose(1, 0, 2).reshape(width, out_h * channels)
    cols = _spans(out_w, width, method, antialias) @ rows
    return cols.reshape(out_w, out_h, channels).transpose(1, 0, 2)


def resize_and_crop(image, image_size, crop_fraction=1.0, method="bilinear", antialias=True):
    """The evaluation crop of `keras_vitres.data.geometry.resize_and_crop`, in NumPy: a float32 (H, W, C) array."""
    target_h, target_w = (int(s) for s in image_size)
    height, width = image.shape[:2]
    h32, w32 = np.float32(height), np.float32(width)
    scale = max(np.float32(target_h) / (np.float32(crop_fraction) * h32),
                np.float32(target_w) / (np.float32(crop_fraction) * w32))
    new_h = max(int(np.round(h32 * scale)), target_h)
    new_w = max(int(np.round(w32 * scale)), target_w)
    image = np.asarray(image, np.float32)
    if (new_h, new_w) != (height, width):
        image = scale_and_translate(image, (new_h, new_w), method, antialias)
    top, left = (new_h - target_h) // 2, (new_w - target_w) // 2
    return image[top : top + target_h, left : left + target_w]


def prepare_image(data, metadata, jpeg_decoder="auto"):
    """JPEG or PNG bytes -> the float32 (H, W, 3) pixels an export takes, following its metadata (size, crop,
    resize method, pixel limit) as its bytes signature would (`jpeg_decoder`: see `decode_rgb`)."""
    pixels = decode_rgb(data, metadata.get("max_pixels", DEFAULT_MAX_PIXELS), jpeg_decoder)
    crop = metadata.get("preprocessing", {}).get("crop_fraction", 1.0)
    return resize_and_crop(pixels, metadata["image_size"], crop, metadata.get("resize_method", "bilinear"),
                           metadata.get("antialias", True))

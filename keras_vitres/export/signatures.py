"""The serving graphs every format is converted from: float pixels -> probabilities, top-k and class names, and the
SavedModel's encoded-image variant.

    classify(images: float32 (batch, H, W, C), raw [0, 255] RGB)
        -> probabilities float32 (batch, classes), classes int32 (batch, k), scores float32 (batch, k),
           class_names string (batch, k) when the classes are named and the format carries strings.
    classify_bytes(image_bytes: string (batch,), JPEG or PNG files) -> the same, through `decode_image_batch`.

The class names are a constant created inside the graph (not captured from outside it), which the ONNX and LiteRT
converters keep as a string tensor.
"""

from keras_vitres.export.decoding import decode_image_batch

FLOAT_SIGNATURE = "serving_default"
BYTES_SIGNATURE = "serving_bytes"
FLOAT_INPUT = "images"
BYTES_INPUT = "image_bytes"
OUTPUTS = ("probabilities", "classes", "scores")


def float_function(model, contract, with_class_names=True):
    """The float-pixel `tf.function` of `model` under `contract` (a `ServingContract`), with its input signature."""
    import tensorflow as tf

    height, width = contract.image_size
    channels = contract.channels
    names = contract.class_names if with_class_names else None
    description = contract.in_graph_preprocessing
    prepare = None if description is None else description.layer(name="export_preprocessing", dtype="float32")

    @tf.function(input_signature=[tf.TensorSpec((None, height, width, channels), tf.float32, name=FLOAT_INPUT)])
    def classify(images):
        images = tf.ensure_shape(images, (None, height, width, channels))
        scores = tf.cast(model(images if prepare is None else prepare(images), training=False), tf.float32)
        probabilities = tf.nn.softmax(scores, axis=-1) if contract.output == "logits" else scores
        top_scores, top_classes = tf.math.top_k(probabilities, k=contract.top_k)
        outputs = {"probabilities": probabilities, "classes": top_classes, "scores": top_scores}
        if names is not None:
            outputs["class_names"] = tf.gather(tf.constant(names, tf.string), top_classes)
        return outputs

    return classify


def bytes_function(classify, contract):
    """The encoded-image `tf.function`: decodes, checks, resizes and crops a batch of files, then runs `classify`."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None,), tf.string, name=BYTES_INPUT)])
    def classify_bytes(image_bytes):
        images = decode_image_batch(
            image_bytes, contract.image_size, contract.channels, contract.resize_method, contract.antialias,
            contract.max_pixels, crop_fraction=contract.crop_fraction,
        )
        return classify(images)

    return classify_bytes


def float_archive(model, classify):
    """A `keras.export.ExportArchive` holding `model` and the float signature only (what the converters read)."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(FLOAT_SIGNATURE, classify)  # the first endpoint is also TF Serving's default
    return archive

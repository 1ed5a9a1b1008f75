"""TF1 graph-mode SavedModels, written the way TF 1.x programs wrote them (``tf.compat.v1`` graphs, placeholders of
unknown shape, ``SavedModelBuilder``, ``tf.Example`` parsing, assets, ``main_op`` / ``legacy_init_op``, reference
variables), to check that the model server loads and serves them as TensorFlow Serving does.

``half_plus`` is shaped like TFS's own ``half_plus_two`` / ``half_plus_three`` test models (``y = 0.5 * x + c``),
so TFS's documented examples can be replayed against it; ``ranks`` holds variables of every rank; ``classifier``
has ``classes`` and ``scores`` outputs and a bytes feature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

v1 = tf.compat.v1
REGRESS = "tensorflow/serving/regress"
CLASSIFY = "tensorflow/serving/classify"
CLASS_NAMES = ("cat", "dog", "bird")
ASSET_TEXT = "vocabulary of the half_plus model\n"


def _info(tensor: Any) -> Any:
    return v1.saved_model.utils.build_tensor_info(tensor)


def _signature(inputs: dict[str, Any], outputs: dict[str, Any], method: str) -> Any:
    return v1.saved_model.signature_def_utils.build_signature_def(
        inputs={k: _info(v) for k, v in inputs.items()},
        outputs={k: _info(v) for k, v in outputs.items()},
        method_name=method,
    )


def _rewrite(path: Path, edit: Any) -> None:
    """Edit ``saved_model.pb`` in place (to write what older TF versions wrote)."""
    model = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    for meta_graph in model.meta_graphs:
        edit(meta_graph)
    (path / "saved_model.pb").write_bytes(model.SerializeToString())


def _as_tf_1_x(meta_graph: meta_graph_pb2.MetaGraphDef) -> None:
    """TF 1.x kept the init op in ``legacy_init_op`` and the assets in the ``saved_model_assets`` collection."""
    collections = meta_graph.collection_def
    if "saved_model_main_op" in collections:
        collections["legacy_init_op"].CopyFrom(collections["saved_model_main_op"])
        del collections["saved_model_main_op"]
    if meta_graph.asset_file_def:
        for asset in meta_graph.asset_file_def:
            collections["saved_model_assets"].any_list.value.add().Pack(asset)
        del meta_graph.asset_file_def[:]


def build_half_plus(
    path: Path,
    *,
    offset: float,
    legacy: bool = False,
    saved_model_config: bytes | None = None,
    tmp: Path,
) -> Path:
    """``y = 0.5 * x + offset`` with Predict (``x`` -> ``y``), Regress and Classify signatures on ``tf.Example``.

    Args:
        path: the version folder to write.
        offset: ``c`` (2 for TFS's half_plus_two, 3 for half_plus_three).
        legacy: write ``legacy_init_op`` and the ``saved_model_assets`` collection, as TF 1.x did.
        saved_model_config: bytes for ``assets.extra/saved_model_config.pb`` (none when None).
        tmp: a scratch folder (the asset's source).
    """
    asset_source = tmp / f"half_plus_{offset:g}_vocab.txt"
    asset_source.write_text(ASSET_TEXT)
    graph = tf.Graph()
    with graph.as_default():
        a = v1.Variable(0.5, name="a", use_resource=False)  # a TF 1.x reference variable
        c = v1.Variable(offset, name="c")
        serialized = v1.placeholder(tf.string, shape=[None], name="tf_example")
        features = v1.io.parse_example(
            serialized,
            {
                "x": v1.io.FixedLenFeature([1], tf.float32),
                "x2": v1.io.FixedLenFeature([1], tf.float32, default_value=[0.0]),
            },
        )
        x = tf.identity(features["x"], name="x")
        y = tf.identity(a * x + c, name="y")
        y3 = tf.identity(a * tf.identity(features["x2"]) + c, name="y3")
        # The asset: its path is fed at load time; the init op copies it into a variable the model outputs.
        asset_path = tf.constant(str(asset_source), name="asset_path")
        v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, asset_path)
        vocabulary = v1.Variable("", name="vocabulary", trainable=False, collections=[])
        init = tf.group(v1.saved_model.main_op.main_op(), vocabulary.assign(tf.io.read_file(asset_path)))
        signatures = {
            "serving_default": _signature({"x": x}, {"y": y}, v1.saved_model.signature_constants.PREDICT_METHOD_NAME),
            REGRESS: _signature({"inputs": serialized}, {"outputs": y}, REGRESS),
            "regress_x2_to_y3": _signature({"inputs": serialized}, {"outputs": y3}, REGRESS),
            CLASSIFY: _signature({"inputs": serialized}, {"scores": y}, CLASSIFY),
            "vocabulary": _signature({"x": x}, {"text": tf.identity(vocabulary.value())}, "tensorflow/serving/predict"),
        }
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                session,
                [v1.saved_model.tag_constants.SERVING],
                signature_def_map=signatures,
                assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS),
                main_op=init,
            )
            # Several tag sets: TFS serves the one tagged exactly "serve".
            builder.add_meta_graph(["serve", "gpu"], signature_def_map={})
            builder.add_meta_graph(["train"], signature_def_map={})
            builder.save()
    if legacy:
        _rewrite(path, _as_tf_1_x)
    if saved_model_config is not None:
        (path / "assets.extra").mkdir(exist_ok=True)
        (path / "assets.extra" / "saved_model_config.pb").write_bytes(saved_model_config)
    return path


def build_ranks(path: Path) -> Path:
    """Variables of rank 0 to 4; input ``x`` float ``[None, 3]`` through a ``[3, 2]`` matrix, and ``any`` with no
    static shape at all."""
    graph = tf.Graph()
    with graph.as_default():
        scalar = v1.get_variable("scalar", initializer=tf.constant(1.0))
        vector = v1.get_variable("vector", initializer=tf.constant([1.0, 2.0]))
        matrix = v1.get_variable("matrix", initializer=tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        cube = v1.Variable(tf.ones([2, 2, 2]), name="cube", use_resource=False)
        tesseract = v1.get_variable("tesseract", initializer=tf.fill([1, 2, 1, 2], 0.25))
        x = v1.placeholder(tf.float32, shape=[None, 3], name="x")
        anything = v1.placeholder(tf.float32, shape=None, name="any")
        bias = scalar + tf.reduce_sum(cube) + tf.reduce_sum(tesseract)  # 1 + 8 + 1 = 10
        y = tf.matmul(x, matrix) * vector + bias
        signatures = {
            "serving_default": _signature({"x": x}, {"y": y}, v1.saved_model.signature_constants.PREDICT_METHOD_NAME),
            "double": _signature(
                {"any": anything}, {"doubled": anything * 2.0}, v1.saved_model.signature_constants.PREDICT_METHOD_NAME
            ),
        }
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                session, [v1.saved_model.tag_constants.SERVING], signature_def_map=signatures
            )
            builder.save()
    return path


def build_classifier(path: Path) -> Path:
    """Classify on ``tf.Example``: features ``f`` (2 floats) and ``image`` (bytes); scores ``[f0, f1, len(image)]``
    with classes :data:`CLASS_NAMES`; also a Regress signature (``f0 + f1``)."""
    graph = tf.Graph()
    with graph.as_default():
        serialized = v1.placeholder(tf.string, shape=[None], name="input_example_tensor")
        features = v1.io.parse_example(
            serialized,
            {
                "f": v1.io.FixedLenFeature([2], tf.float32),
                "image": v1.io.FixedLenFeature([], tf.string, default_value=""),
            },
        )
        length = tf.cast(tf.strings.length(features["image"]), tf.float32)
        scores = tf.concat([features["f"], length[:, None]], axis=1)
        classes = tf.tile(tf.constant([list(CLASS_NAMES)]), [tf.shape(serialized)[0], 1])
        total = tf.reduce_sum(features["f"], axis=1, keepdims=True)
        signatures = {
            "serving_default": _signature({"inputs": serialized}, {"classes": classes, "scores": scores}, CLASSIFY),
            "scores_only": _signature({"inputs": serialized}, {"scores": scores}, CLASSIFY),
            "sum": _signature({"inputs": serialized}, {"outputs": total}, REGRESS),
        }
        with v1.Session(graph=graph) as session:
            builder = v1.saved_model.Builder(str(path))
            builder.add_meta_graph_and_variables(
                session, [v1.saved_model.tag_constants.SERVING], signature_def_map=signatures
            )
            builder.save()
    return path

"""A SavedModel loaded the way TensorFlow Serving loads it (``loader.cc``'s ``LoadSavedModel``), for TF1 and TF2
exports alike.

The ``serve`` meta graph is imported into a fresh ``tf.compat.v1.Graph``; the variables are restored by running the
saver's own restore op (``saver_def.restore_op_name``) with the variables prefix fed to ``filename_tensor_name``;
then the init op (``__saved_model_init_op``, else the ``main_op`` collection, else ``legacy_init_op``) runs with the
asset paths fed. Signatures then run by tensor name in that session, through callables made with the C API
(``Session::MakeCallable``): like TFS's ``Session::Run``, feeds are not checked against static shapes, so the runtime
decides what an input may be and its error is the answer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2

log = logging.getLogger(__name__)

Array = np.ndarray[Any, Any]

VARIABLES_PREFIX = ("variables", "variables")
ASSETS_DIR = "assets"
INIT_OP_SIGNATURE = "__saved_model_init_op"
MAIN_OP_COLLECTION = "saved_model_main_op"
LEGACY_INIT_OP_COLLECTION = "legacy_init_op"
ASSETS_COLLECTION = "saved_model_assets"


def asset_feeds(meta_graph: meta_graph_pb2.MetaGraphDef, export_dir: Path) -> dict[str, str]:
    """Asset tensor name -> absolute file path (``asset_file_def``, or the TF 1.x ``saved_model_assets``
    collection)."""
    assets = list(meta_graph.asset_file_def)
    if not assets and ASSETS_COLLECTION in meta_graph.collection_def:
        for packed in meta_graph.collection_def[ASSETS_COLLECTION].any_list.value:
            asset = meta_graph_pb2.AssetFileDef()
            packed.Unpack(asset)
            assets.append(asset)
    return {asset.tensor_info.name: str(export_dir / ASSETS_DIR / asset.filename) for asset in assets}


def init_op_name(meta_graph: meta_graph_pb2.MetaGraphDef) -> str | None:
    """The op TFS runs after the restore: TF2's init signature, else ``main_op``, else ``legacy_init_op``."""
    signature = meta_graph.signature_def.get(INIT_OP_SIGNATURE)
    if signature is not None and INIT_OP_SIGNATURE in signature.outputs:
        return str(signature.outputs[INIT_OP_SIGNATURE].name)
    for key in (MAIN_OP_COLLECTION, LEGACY_INIT_OP_COLLECTION):
        collection = meta_graph.collection_def.get(key)
        if collection is not None and collection.node_list.value:
            return str(collection.node_list.value[0])
    return None


def _note_saved_model_config(export_dir: Path) -> None:
    # TFS reads assets.extra/saved_model_config.pb (a SavedModelConfig: graph-rewrite options for its session). That
    # message isn't in the pip packages and only tunes performance, so the file is accepted, empty or not, and noted.
    path = export_dir / "assets.extra" / "saved_model_config.pb"
    if path.is_file():
        log.info("%s (%d bytes): its session options are not applied", path, path.stat().st_size)


class SessionBundle:
    """A session holding one restored SavedModel meta graph (TFS's ``SavedModelBundle``)."""

    def __init__(self, export_dir: Path, meta_graph: meta_graph_pb2.MetaGraphDef) -> None:
        self.export_dir = export_dir
        self.meta_graph = meta_graph
        self.graph = tf.Graph()
        config = config_pb2.ConfigProto(allow_soft_placement=True)
        with self.graph.as_default():
            tf.compat.v1.train.import_meta_graph(meta_graph)
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        self._callables: dict[tuple[tuple[str, ...], tuple[str, ...]], Any] = {}
        self._lock = threading.Lock()
        self._restore()
        _note_saved_model_config(export_dir)

    def _restore(self) -> None:
        saver_def = self.meta_graph.saver_def
        prefix = self.export_dir.joinpath(*VARIABLES_PREFIX)
        has_variables = prefix.with_name(prefix.name + ".index").is_file()
        if has_variables and saver_def.restore_op_name:
            self.session.run(saver_def.restore_op_name, {saver_def.filename_tensor_name: str(prefix)})
        elif has_variables:
            log.warning("%s has variables but its meta graph has no saver_def: they are not restored", self.export_dir)
        init = init_op_name(self.meta_graph)
        if init is not None:
            self.session.run(init, asset_feeds(self.meta_graph, self.export_dir))

    def run(self, feeds: Mapping[str, Array], fetches: Sequence[str]) -> list[Array]:
        """Run the graph: tensor name -> value in, the fetched tensors' values out (in ``fetches`` order).

        Raises:
            tf.errors.OpError: the runtime's error (bad feed dtype or shape, a failing op).
        """
        names = tuple(feeds)
        key = (names, tuple(fetches))
        runner = self._callables.get(key)
        if runner is None:
            with self._lock:
                runner = self._callables.get(key)
                if runner is None:
                    options = config_pb2.CallableOptions(feed=list(names), fetch=list(fetches))
                    runner = self.session._make_callable_from_options(options)
                    self._callables[key] = runner
        return list(runner(*(feeds[name] for name in names)))

    def unrestored_variables(self) -> list[str]:
        """Resource variables the restore and init ops left uninitialized (names of their ``VarHandleOp``).

        A Keras 3 model saved inside a ``tf.Module`` with ``tf.saved_model.save`` captures its variables under a
        second set of handles that the saver doesn't restore: TFS loads it and then fails every request with
        ``Could not find variable ...`` (tensorflow/serving#2226, keras-team/keras#19274).
        """
        handles = [node.name for node in self.meta_graph.graph_def.node if node.op == "VarHandleOp"]
        if not handles:
            return []
        with self.graph.as_default(), tf.name_scope("spotter_restore_check"):
            checks = [
                tf.raw_ops.VarIsInitializedOp(resource=self.graph.get_tensor_by_name(f"{name}:0")) for name in handles
            ]
        initialized = self.session.run(checks)
        return [name for name, ok in zip(handles, initialized, strict=True) if not ok]

    def close(self) -> None:
        self._callables.clear()
        self.session.close()


class ObjectGraphBundle:
    """The fallback for TF2 exports TFS can't run (see :meth:`SessionBundle.unrestored_variables`): the model
    loaded by ``tf.saved_model.load`` (object-graph restore), run through its signature functions with
    :class:`SessionBundle`'s by-tensor-name interface. Shapes are then checked by the functions' input signatures."""

    def __init__(self, export_dir: Path, meta_graph: meta_graph_pb2.MetaGraphDef) -> None:
        self.export_dir = export_dir
        self.meta_graph = meta_graph
        self._model = tf.saved_model.load(str(export_dir), tags=["serve"])
        self._functions = dict(self._model.signatures)

    def run(self, feeds: Mapping[str, Array], fetches: Sequence[str]) -> list[Array]:
        values: dict[str, Array] = {}
        for key, signature in self.meta_graph.signature_def.items():
            names = {info.name: alias for alias, info in signature.inputs.items()}
            outputs = {info.name: alias for alias, info in signature.outputs.items()}
            wanted = [name for name in fetches if name in outputs and name not in values]
            if key not in self._functions or set(names) != set(feeds) or not wanted:
                continue
            result = self._functions[key](**{names[name]: tf.constant(value) for name, value in feeds.items()})
            values.update({name: result[outputs[name]].numpy() for name in wanted})
        missing = [name for name in fetches if name not in values]
        if missing:
            raise ValueError(f"no signature computes {', '.join(missing)} from {', '.join(feeds) or 'no inputs'}")
        return [values[name] for name in fetches]

    def close(self) -> None:
        self._functions.clear()


def load_bundle(export_dir: Path, meta_graph: meta_graph_pb2.MetaGraphDef, *, strict: bool) -> Any:
    """TFS's way (:class:`SessionBundle`); for a TF2 export whose variables TFS's way leaves unrestored, an error
    when ``strict``, else :class:`ObjectGraphBundle` with a warning.

    Raises:
        UnservableOnTfsError: ``strict`` and the export has unrestored variables.
    """
    bundle = SessionBundle(export_dir, meta_graph)
    unrestored = bundle.unrestored_variables()
    if not unrestored:
        return bundle
    bundle.close()
    message = (
        f"{len(unrestored)} variable(s) of {export_dir} (e.g. {unrestored[0]}) are not restored by its saver: "
        "TensorFlow Serving would fail every request with 'Could not find variable' (keras-team/keras#19274, "
        "tensorflow/serving#2250: export so that the variables the functions capture are the tracked ones)"
    )
    if strict:
        raise UnservableOnTfsError(message)
    log.warning("%s; serving it through tf.saved_model.load instead", message)
    return ObjectGraphBundle(export_dir, meta_graph)


class UnservableOnTfsError(Exception):
    """A SavedModel that loads here only because of the object-graph fallback; TFS can't serve it."""

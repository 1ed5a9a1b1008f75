"""Server-side batching as TFS does it: the deploy files' parameters, runs of concurrent requests merged, padded to
an allowed size and split back, a full queue refused at once, variable-length inputs padded."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from services.modelserver.batching import BatchingBundle, BatchingParameters, read_batching_parameters
from services.modelserver.bundle import SessionBundle
from services.modelserver.config import ConfigError
from services.modelserver.servable import read_signature_defs
from services.modelserver.status import ServingError
from tests.support.modelserver import running_model_server
from tests.support.tiny_models import expected_scores
from tests.tf.modelserver.conftest import SIZE
from tests.tf.modelserver.tf1_models import build_ranks

DEPLOY_PARAMETERS = Path(__file__).parents[3] / "deploy" / "tfs" / "batching_parameters.txt"


def test_the_deploy_files_parameters_are_read() -> None:
    params = read_batching_parameters(DEPLOY_PARAMETERS)
    assert params == BatchingParameters(
        max_batch_size=32,
        batch_timeout_micros=2000,
        max_enqueued_batches=64,
        num_batch_threads=2,
        allowed_batch_sizes=(1, 2, 4, 8, 16, 32),
    )
    assert read_batching_parameters(None) == BatchingParameters()  # TFS's defaults


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_batch_size { value: 8 } allowed_batch_sizes: 4 allowed_batch_sizes: 2", "monotonically increasing"),
        ("max_batch_size { value: 8 } allowed_batch_sizes: 4", "must equal max_batch_size"),
        ("max_batch_size: 8", "not a valid|cannot read"),
        ("batch_size_max { value: 8 }", "cannot read"),
    ],
)
def test_bad_parameter_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "batching.txt"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_batching_parameters(path)


class Counting:
    """The real session bundle, recording the batch size of each run."""

    def __init__(self, bundle: SessionBundle) -> None:
        self.bundle = bundle
        self.sizes: list[int] = []

    def run(self, feeds: Mapping[str, np.ndarray], fetches: Sequence[str]) -> list[np.ndarray]:
        self.sizes.append(next(iter(feeds.values())).shape[0])
        return self.bundle.run(feeds, fetches)

    def close(self) -> None:
        self.bundle.close()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[SessionBundle, Any]:
    path = build_ranks(tmp_path_factory.mktemp("batching") / "1")
    meta_graph = read_signature_defs(path)
    return SessionBundle(path, meta_graph), meta_graph.signature_def


def names(signature_defs: Any, key: str, output: str) -> tuple[str, str]:
    sig = signature_defs[key]
    return next(iter(sig.inputs.values())).name, sig.outputs[output].name


def test_concurrent_runs_share_padded_batches_and_get_their_own_rows(ranks: tuple[SessionBundle, Any]) -> None:
    bundle, signatures = ranks
    counting = Counting(bundle)
    params = BatchingParameters(max_batch_size=8, batch_timeout_micros=300_000, allowed_batch_sizes=(2, 4, 8))
    batching = BatchingBundle(counting, params, threading.BoundedSemaphore(1))
    x, y = names(signatures, "serving_default", "y")
    inputs = [np.random.default_rng(i).normal(size=(1 + i % 3, 3)).astype(np.float32) for i in range(12)]
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda value: batching.run({x: value}, [y])[0], inputs))
    for value, result in zip(inputs, results, strict=True):
        np.testing.assert_allclose(result, bundle.run({x: value}, [y])[0], rtol=1e-6)
    batched_runs = counting.sizes
    assert len(batched_runs) < len(inputs)  # requests shared runs
    assert set(batched_runs) <= {2, 4, 8}  # each padded up to an allowed size
    assert sum(batched_runs) >= sum(len(v) for v in inputs)


def test_a_task_over_the_maximum_and_a_full_queue_are_refused(ranks: tuple[SessionBundle, Any]) -> None:
    bundle, signatures = ranks
    slots = threading.BoundedSemaphore(1)
    params = BatchingParameters(max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=1)
    batching = BatchingBundle(bundle, params, slots)
    x, y = names(signatures, "serving_default", "y")
    with pytest.raises(ServingError) as info:
        batching.run({x: np.zeros((3, 3), np.float32)}, [y])
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.message == "Task size 3 is larger than maximum input batch size 2"

    slots.acquire()  # no batch can run: one waits for a slot off the queue, the next fills the queue, then full
    accepted: list[Any] = []
    refused: BaseException | None = None
    with ThreadPoolExecutor(4) as pool:
        try:
            for _ in range(4):
                future = pool.submit(batching.run, {x: np.zeros((2, 3), np.float32)}, [y])
                try:
                    future.result(timeout=0.5)
                except TimeoutError:
                    accepted.append(future)  # queued (or waiting for the slot)
                    continue
                except ServingError as exc:
                    refused = exc
                    break
        finally:
            slots.release()
        assert all(future.result(timeout=30)[0].shape == (2, 2) for future in accepted)
    assert 1 <= len(accepted) <= 2
    assert isinstance(refused, ServingError) and refused.code == grpc.StatusCode.UNAVAILABLE
    assert refused.message == "The batch scheduling queue to which this task was submitted is full"


def test_variable_length_inputs_are_padded_with_zeros(ranks: tuple[SessionBundle, Any]) -> None:
    bundle, signatures = ranks
    params = BatchingParameters(max_batch_size=4, batch_timeout_micros=300_000, pad_variable_length_inputs=True)
    batching = BatchingBundle(bundle, params, threading.BoundedSemaphore(1))
    anything, doubled = names(signatures, "double", "doubled")
    short, long = np.ones((1, 2), np.float32), np.ones((1, 3), np.float32)
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda v: batching.run({anything: v}, [doubled])[0], [short, long])
    # Batched together, the short input was padded to the long one's width (TFS doesn't cut outputs back).
    np.testing.assert_array_equal(first, [[2.0, 2.0, 0.0]])
    np.testing.assert_array_equal(second, [[2.0, 2.0, 2.0]])


def test_a_signature_without_inputs_can_not_be_batched(ranks: tuple[SessionBundle, Any]) -> None:
    bundle, _ = ranks
    with pytest.raises(ServingError, match="must have at least one input tensor"):
        BatchingBundle(bundle, BatchingParameters(), threading.BoundedSemaphore(1)).run({}, ["y:0"])


@pytest.mark.integration
def test_the_server_batches_with_the_deploy_parameters(model_root: Path, tmp_path: Path) -> None:
    env = {
        "SPOTTER_MODELSERVER_ENABLE_BATCHING": "true",
        "SPOTTER_MODELSERVER_BATCHING_PARAMETERS_FILE": str(DEPLOY_PARAMETERS),
    }
    with (
        running_model_server(model_root, log_dir=tmp_path, env=env, wait_for=["tiny"], name="batching") as server,
        grpc.insecure_channel(server.grpc_target) as channel,
    ):
        server.wait_available("tiny", 2)  # the requests name version 2; "tiny" may be up with version 1 alone
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        def one(i: int) -> bool:
            batch = np.full((1 + i % 3, SIZE, SIZE, 3), i * 10, np.uint8)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "tiny"
            request.model_spec.version.value = 2
            request.inputs["images"].CopyFrom(tf.make_tensor_proto(batch))
            scores = tf.make_ndarray(stub.Predict(request, timeout=30).outputs["detection_scores"])
            return scores.shape[0] == len(batch) and bool(np.allclose(scores, expected_scores(batch, 1.0)))

        with ThreadPoolExecutor(8) as pool:
            assert all(pool.map(one, range(24)))
        assert "Server-side batching on" in server.server.log()

"""TFS's Classify, Regress and MultiInference on ``tf.Example`` input (``classifier.cc``, ``regressor.cc``,
``multi_inference.cc``, ``util.cc``), with their checks and messages.

The ``Input`` becomes a string vector of serialized examples; with ``example_list_with_context`` each is the
context's bytes followed by the example's, so on parsing the example's features win over the context's, exactly as
TFS builds it. That vector is fed to the signature's ``inputs`` tensor and the outputs are checked and converted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    input_pb2,
    model_pb2,
    regression_pb2,
)

from services.modelserver.servable import DEFAULT_SIGNATURE, Servable, Signature
from services.modelserver.status import failed_precondition, invalid_argument

Array = np.ndarray[Any, Any]

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"
INPUTS, CLASSES, SCORES, OUTPUTS = "inputs", "classes", "scores", "outputs"


def serialized_examples(request_input: input_pb2.Input) -> Array:
    """The ``[num_examples]`` string tensor TFS feeds (``InputToSerializedExampleTensor``)."""
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        values = [example.SerializeToString() for example in request_input.example_list.examples]
    elif kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        context = with_context.context.SerializeToString()
        values = [context + example.SerializeToString() for example in with_context.examples]
    else:
        values = []
    if not values:
        raise invalid_argument("Input is empty.")
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _signature(servable: Servable, name: str, method: str, kind: str) -> Signature:
    key = name or DEFAULT_SIGNATURE
    signature = servable.signatures.get(key)
    if signature is None:
        raise invalid_argument(f"No signature was found with the name: {key}")
    if signature.method_name != method:
        raise invalid_argument(f"Expected {kind} signature method_name to be {method}. Was: {signature.method_name}")
    return signature


def _classify_fetches(signature: Signature) -> list[str]:
    """The outputs a classification signature must have (``PreProcessClassification``)."""
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) not in (1, 2):
        raise invalid_argument(f"Expected one or two output Tensors, found {len(signature.outputs)}")
    if INPUTS not in signature.inputs:
        raise failed_precondition(f"No classification inputs found in SignatureDef: {signature.name}")
    fetches = [alias for alias in (CLASSES, SCORES) if alias in signature.outputs]
    if not fetches:
        raise failed_precondition(
            f'Expected classification signature outputs to contain at least one of "{CLASSES}" or "{SCORES}". '
            f"Signature was: {signature.name}"
        )
    return fetches


def _regress_fetches(signature: Signature) -> list[str]:
    """The output a regression signature must have (``PreProcessRegression``)."""
    if len(signature.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if len(signature.outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if INPUTS not in signature.inputs:
        raise failed_precondition(f"No regression inputs found in SignatureDef: {signature.name}")
    if OUTPUTS not in signature.outputs:
        raise failed_precondition(f"No regression outputs found in SignatureDef: {signature.name}")
    return [OUTPUTS]


def _check_matrix(name: str, array: Array, dtype: int, expected: int, num_examples: int) -> None:
    if array.ndim != 2:
        raise invalid_argument(f"Expected Tensor shape: [batch_size num_classes] but got {_shape(array)}")
    if dtype != expected:
        raise invalid_argument(
            f"Expected {name} Tensor of {types_pb2.DataType.Name(expected)}. Got: {types_pb2.DataType.Name(dtype)}"
        )
    if array.shape[0] != num_examples:
        raise invalid_argument(f"Expected {name} output batch size of {num_examples}. Got: {array.shape[0]}")


def _shape(array: Array) -> str:
    return "[" + ",".join(str(d) for d in array.shape) + "]"


def classification_result(
    signature: Signature, num_examples: int, values: dict[str, Array], result: classification_pb2.ClassificationResult
) -> None:
    """``PostProcessClassificationResult``: check the outputs, then one ``Classifications`` per example."""
    classes, scores = values.get(CLASSES), values.get(SCORES)
    if classes is not None:
        _check_matrix(CLASSES, classes, signature.outputs[CLASSES], types_pb2.DT_STRING, num_examples)
    if scores is not None:
        _check_matrix(SCORES, scores, signature.outputs[SCORES], types_pb2.DT_FLOAT, num_examples)
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid_argument(
            f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. {scores.shape[1]}"
        )
    reference = classes if classes is not None else scores
    num_classes = reference.shape[1] if reference is not None else 0
    for i in range(num_examples):
        classifications = result.classifications.add()
        for c in range(num_classes):
            entry = classifications.classes.add()
            if classes is not None:
                entry.label = bytes(classes[i, c]).decode("utf-8", errors="replace")
            if scores is not None:
                entry.score = float(scores[i, c])


def regression_result(
    signature: Signature, num_examples: int, values: dict[str, Array], result: regression_pb2.RegressionResult
) -> None:
    """``PostProcessRegressionResult``: a float ``[batch]`` or ``[batch, 1]`` output, one value per example."""
    output = values[OUTPUTS]
    if not (output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1)):
        raise invalid_argument(
            f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but got {_shape(output)}"
        )
    if output.shape[0] != num_examples:
        raise invalid_argument(
            f"Input batch size did not match output batch size: {num_examples} vs. {output.shape[0]}"
        )
    dtype = signature.outputs[OUTPUTS]
    if dtype != types_pb2.DT_FLOAT:
        raise invalid_argument(f"Expected output Tensor of DT_FLOAT.  Got: {types_pb2.DataType.Name(dtype)}")
    for value in output.reshape(-1):
        result.regressions.add().value = float(value)


def _run(
    servable: Servable, signature: Signature, request_input: input_pb2.Input, aliases: Sequence[str], api: str
) -> tuple[int, dict[str, Array]]:
    examples = serialized_examples(request_input)
    fetches = [signature.output_tensors[alias] for alias in aliases]
    outputs = servable.run_tensors({signature.input_tensors[INPUTS]: examples}, fetches, api)
    return len(examples), dict(zip(aliases, outputs, strict=True))


def _fill_spec(spec: model_pb2.ModelSpec, servable: Servable, signature: str) -> None:
    spec.name = servable.name
    spec.version.value = servable.version
    spec.signature_name = signature


def classify(
    servable: Servable, request: classification_pb2.ClassificationRequest
) -> classification_pb2.ClassificationResponse:
    """TFS's Classify on one loaded version."""
    signature = _signature(servable, request.model_spec.signature_name, CLASSIFY, "classification")
    aliases = _classify_fetches(signature)
    num_examples, values = _run(servable, signature, request.input, aliases, "Classify")
    response = classification_pb2.ClassificationResponse()
    _fill_spec(response.model_spec, servable, signature.name)
    classification_result(signature, num_examples, values, response.result)
    return response


def regress(servable: Servable, request: regression_pb2.RegressionRequest) -> regression_pb2.RegressionResponse:
    """TFS's Regress on one loaded version."""
    signature = _signature(servable, request.model_spec.signature_name, REGRESS, "regression")
    aliases = _regress_fetches(signature)
    num_examples, values = _run(servable, signature, request.input, aliases, "Regress")
    response = regression_pb2.RegressionResponse()
    _fill_spec(response.model_spec, servable, signature.name)
    regression_result(signature, num_examples, values, response.result)
    return response


def multi_inference(
    servable: Servable, request: inference_pb2.MultiInferenceRequest
) -> inference_pb2.MultiInferenceResponse:
    """TFS's MultiInference: several classify/regress signatures of one model on one input, in one run."""
    if not request.tasks:
        raise invalid_argument("Tasks field is empty.")
    plans: list[tuple[str, Signature, list[str]]] = []
    seen: set[str] = set()
    input_tensor = None
    for task in request.tasks:
        if task.model_spec.name != request.tasks[0].model_spec.name:
            raise invalid_argument("All ModelSpecs in a MultiInferenceRequest must access the same model name.")
        name = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if name in seen:
            raise invalid_argument(f"Duplicate evaluation of signature: {name}")
        seen.add(name)
        signature = servable.signatures.get(name)
        if signature is None:
            raise invalid_argument(f"Requested signature not found in model graph: {name}")
        if task.method_name == CLASSIFY:
            aliases = _classify_fetches(signature)
        elif task.method_name == REGRESS:
            aliases = _regress_fetches(signature)
        else:
            raise invalid_argument(f"Unsupported signature method_name: {task.method_name}")
        if input_tensor is not None and signature.input_tensors[INPUTS] != input_tensor:
            raise invalid_argument("Input tensor must be the same for all Signatures.")
        input_tensor = signature.input_tensors[INPUTS]
        plans.append((task.method_name, signature, aliases))
    examples = serialized_examples(request.input)
    fetches = sorted({signature.output_tensors[a] for _, signature, aliases in plans for a in aliases})
    outputs = dict(
        zip(fetches, servable.run_tensors({str(input_tensor): examples}, fetches, "MultiInference"), strict=True)
    )
    response = inference_pb2.MultiInferenceResponse()
    for method, signature, aliases in plans:
        values = {alias: outputs[signature.output_tensors[alias]] for alias in aliases}
        result = response.results.add()
        _fill_spec(result.model_spec, servable, signature.name)
        if method == CLASSIFY:
            classification_result(signature, len(examples), values, result.classification_result)
        else:
            regression_result(signature, len(examples), values, result.regression_result)
    return response

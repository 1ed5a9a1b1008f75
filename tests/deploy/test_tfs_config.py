"""TFS's own config files (deploy/tfs/) parse as the protobuf messages TFS reads them into, and agree with the rest.

TensorFlow Serving parses these text files at start-up and exits on any error, so a typo is a crash-looping pod. We
parse them here without TensorFlow: models.config with the project's wire-compatible stubs (services.gen.tfs), the
batching and monitoring files with message types declared below after TFS's protos (same names, same field numbers:
tensorflow_serving/servables/tensorflow/session_bundle_config.proto, tensorflow_serving/config/monitoring_config.proto).
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2

from services.gen.tfs import model_server_config_pb2
from tests.deploy.support import DEPLOY, find, load_yaml

TFS = DEPLOY / "tfs"
F = descriptor_pb2.FieldDescriptorProto


def _tfs_config_messages() -> dict[str, Any]:
    """BatchingParameters and MonitoringConfig, in a pool of their own (the stubs' pool already has tensorflow.*)."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(
        name="spotter_tests/tfs_config.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    batching = proto.message_type.add(name="BatchingParameters")
    for name, number, wrapper in [
        ("max_batch_size", 1, "Int64Value"),
        ("batch_timeout_micros", 2, "Int64Value"),
        ("max_enqueued_batches", 3, "Int64Value"),
        ("num_batch_threads", 4, "Int64Value"),
        ("thread_pool_name", 5, "StringValue"),
    ]:
        batching.field.add(
            name=name,
            number=number,
            type=F.TYPE_MESSAGE,
            label=F.LABEL_OPTIONAL,
            type_name=f".google.protobuf.{wrapper}",
        )
    batching.field.add(name="allowed_batch_sizes", number=6, type=F.TYPE_INT64, label=F.LABEL_REPEATED)
    batching.field.add(name="pad_variable_length_inputs", number=7, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config",
        number=1,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_OPTIONAL,
        type_name=".tensorflow.serving.PrometheusConfig",
    )
    pool.Add(proto)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
        for name in ("BatchingParameters", "MonitoringConfig")
    }


MESSAGES = _tfs_config_messages()


def model_config() -> Any:
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((TFS / "models.config").read_text(), config)
    return config


def batching_parameters() -> Any:
    return text_format.Parse((TFS / "batching_parameters.txt").read_text(), MESSAGES["BatchingParameters"]())


def monitoring_config() -> Any:
    return text_format.Parse((TFS / "monitoring.config").read_text(), MESSAGES["MonitoringConfig"]())


def test_the_parser_rejects_a_misspelt_field() -> None:
    """The checks below mean something only if a typo fails to parse, as it does in TFS."""
    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_sise { value: 8 }", MESSAGES["BatchingParameters"]())
    with pytest.raises(text_format.ParseError):
        text_format.Parse("model_config_list { config { nmae: 'x' } }", model_server_config_pb2.ModelServerConfig())


def test_models_config_serves_versions_by_label() -> None:
    config = model_config()
    models = config.model_config_list.config
    assert [m.name for m in models] == ["demo"], "the demo model is the one the probes and docs name"
    for model in models:
        # The shared model volume is mounted at /models in every container (compose and Kubernetes).
        assert model.base_path == f"/models/{model.name}"
        assert model.model_platform == "tensorflow"
        # `specific`: a new version is served only once listed, so listing it is the rollout step.
        assert model.model_version_policy.WhichOneof("policy_choice") == "specific"
        versions = set(model.model_version_policy.specific.versions)
        assert versions, f"{model.name}: no version listed"
        assert {"stable", "canary"} <= set(model.version_labels)
        for label, version in model.version_labels.items():
            assert version in versions, f"{model.name}: label {label} names version {version}, which is not served"


def test_batching_parameters_fit_the_gateway(rendered: dict[str, list[dict[str, Any]]]) -> None:
    params = batching_parameters()
    max_batch = params.max_batch_size.value
    assert max_batch > 0
    assert params.batch_timeout_micros.value > 0
    assert params.num_batch_threads.value >= 1
    sizes = list(params.allowed_batch_sizes)
    if sizes:
        assert sizes == sorted(set(sizes)), "allowed_batch_sizes must increase"
        assert sizes[-1] == max_batch, "TFS requires the last allowed batch size to equal max_batch_size"
    # A gateway batch larger than TFS's max_batch_size would be refused by TFS.
    gateway_sizes = [
        int(load_yaml(DEPLOY / "compose.yaml")["services"]["gateway"]["environment"]["SPOTTER_MAX_BATCH_SIZE"])
    ]
    for docs in rendered.values():
        configmap = next(
            d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("spotter-gateway")
        )
        gateway_sizes.append(int(configmap["data"]["SPOTTER_MAX_BATCH_SIZE"]))
    assert max(gateway_sizes) <= max_batch


def test_monitoring_path_is_the_one_prometheus_scrapes(rendered: dict[str, list[dict[str, Any]]]) -> None:
    prometheus = monitoring_config().prometheus_config
    assert prometheus.enable
    assert prometheus.path == "/monitoring/prometheus/metrics"  # the embedded model server serves the same path
    for docs in rendered.values():
        monitor = find(docs, "ServiceMonitor", "spotter-tfs")
        assert [e["path"] for e in monitor["spec"]["endpoints"]] == [prometheus.path]

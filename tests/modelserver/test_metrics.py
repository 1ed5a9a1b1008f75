"""The metrics exposition: TFS's names, counters without ``_total``, TF's latency buckets."""

from __future__ import annotations

from services.modelserver.metrics import LATENCY_BUCKETS, Counter, Histogram, ModelServerMetrics


def test_counter_keeps_its_name() -> None:
    counter = Counter(":tensorflow:serving:request_count", "The total number of requests.", ("model_name", "status"))
    counter.inc("demo", "OK")
    counter.inc("demo", "OK")
    counter.inc("demo", "NOT_FOUND")
    assert list(counter.render()) == [
        "# HELP :tensorflow:serving:request_count The total number of requests.",
        "# TYPE :tensorflow:serving:request_count counter",
        ':tensorflow:serving:request_count{model_name="demo",status="NOT_FOUND"} 1',
        ':tensorflow:serving:request_count{model_name="demo",status="OK"} 2',
    ]


def test_histogram_buckets_are_tf_s_exponential_ones() -> None:
    assert len(LATENCY_BUCKETS) == 33
    assert LATENCY_BUCKETS[:3] == (10.0, 18.0, 32.400000000000006)
    histogram = Histogram("h", "help", ("model_name",))
    histogram.observe("m", value=5.0)
    histogram.observe("m", value=10.0)  # a value equal to a limit counts in the next bucket, as in TF
    histogram.observe("m", value=1e12)
    lines = list(histogram.render())
    assert 'h_bucket{model_name="m",le="10"} 1' in lines
    assert 'h_bucket{model_name="m",le="18"} 2' in lines
    assert 'h_bucket{model_name="m",le="32.4"} 2' in lines
    assert 'h_bucket{model_name="m",le="+Inf"} 3' in lines
    assert 'h_count{model_name="m"} 3' in lines
    assert 'h_sum{model_name="m"} 1000000000015.0' in lines
    assert histogram.count("m") == 3


def test_label_values_are_escaped() -> None:
    counter = Counter("c", "help", ("model_path",))
    counter.inc('a"b\\c')
    assert 'c{model_path="a\\"b\\\\c"} 1' in list(counter.render())


def test_the_exposition_has_every_family() -> None:
    text = ModelServerMetrics().render()
    for name, kind in [
        (":tensorflow:serving:request_count", "counter"),
        (":tensorflow:serving:request_latency", "histogram"),
        (":tensorflow:serving:runtime_latency", "histogram"),
        (":tensorflow:serving:model_warmup_latency", "histogram"),
        (":tensorflow:cc:saved_model:load_attempt_count", "counter"),
        (":tensorflow:cc:saved_model:load_latency", "counter"),
    ]:
        assert f"# TYPE {name} {kind}\n" in text
    assert text.endswith("\n")

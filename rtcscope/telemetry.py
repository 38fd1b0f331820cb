"""The server's own metrics, on prometheus_client, in one registry per application.

Tests run several applications in one process, so nothing goes into the
library's global default registry. Counters this server counts itself are
the library's `Counter`s (an increment is a few hundred nanoseconds: see
bench/counters.py); values that live in other objects (the writer's depth,
the detector's ticks) are read when scraped, never copied on the hot path.
"""
import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

# The exposition has no `_created` samples: they would be series that
# dashboards and alerts built on this server's metrics never asked for.
prometheus_client.disable_created_metrics()

# Seconds: a batch write to a healthy local InfluxDB takes milliseconds; a
# slow or overloaded one seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def latency_histogram(name, help_text):
    """A latency histogram in seconds, in no registry yet: the object that times
    something owns it, `Telemetry.histogram` shows it on an application's /metrics."""
    return prometheus_client.Histogram(name, help_text, buckets=LATENCY_BUCKETS, registry=None)


class _ReadCounter(Collector):
    """A counter kept by another object, read at scrape time."""

    def __init__(self, name, help_text, read):
        self.name = name
        self.help_text = help_text
        self.read = read

    def describe(self):
        return [CounterMetricFamily(self.name, self.help_text)]

    def collect(self):
        return [CounterMetricFamily(self.name, self.help_text, value=self.read())]


class Telemetry:
    """The families one application shows on /metrics, by their exposition name."""

    content_type = CONTENT_TYPE_PLAIN_0_0_4

    def __init__(self):
        self.registry = CollectorRegistry()
        self._counters = {}  # name -> Counter counted here with `inc`
        self._children = {}  # (name, *label values) -> that label set's child: labels() costs µs per call

    def counter(self, name, help_text, read=None, labels=()):
        """A counter counted with `inc`, or read from `read()` (a count kept elsewhere).
        A labelled counter shows no sample until a label set is counted."""
        if not name.endswith("_total"):
            raise ValueError(f"counter {name} must end in _total")
        if read is None:
            self._counters[name] = Counter(name, help_text, labels, registry=self.registry)
        else:
            self.registry.register(_ReadCounter(name, help_text, read))

    def gauge(self, name, help_text, read):
        Gauge(name, help_text, registry=self.registry).set_function(read)

    def histogram(self, histogram):
        """Show a histogram made by `latency_histogram` (observed by its owner)."""
        self.registry.register(histogram)

    def inc(self, name, amount=1, **labels):
        if not labels:
            return self._counters[name].inc(amount)
        key = (name, *labels.values())
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._counters[name].labels(**labels)
        child.inc(amount)

    def value(self, name, **labels):
        """The current value of one sample (0 when that label set was never counted)."""
        return self.registry.get_sample_value(name, {key: str(value) for key, value in labels.items()}) or 0.0

    def render(self):
        return generate_latest(self.registry)

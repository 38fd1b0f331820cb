"""The server's own metrics in the Prometheus text exposition format (0.0.4).

Counters only go up (their names end in `_total`), gauges are read when
scraped, histograms keep cumulative bucket counts. Every family is declared
with its type and help text before it is used, so a scrape always shows it,
at zero if nothing has happened yet.
"""
import bisect
import math
from collections import defaultdict

# Seconds: a batch write to a healthy local InfluxDB takes milliseconds; a
# slow or overloaded one seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    def __init__(self, buckets=LATENCY_BUCKETS):
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * len(self.buckets)  # per bucket, not yet cumulative
        self.count = 0
        self.sum = 0.0

    def observe(self, value):
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.buckets):
            self.counts[index] += 1
        self.count += 1
        self.sum += value

    def cumulative(self):
        """[(upper bound, observations <= bound)], ending with +Inf."""
        out, running = [], 0
        for bound, count in zip(self.buckets, self.counts):
            running += count
            out.append((bound, running))
        out.append((math.inf, self.count))
        return out


class Telemetry:
    def __init__(self):
        self._families = {}  # name -> (type, help)
        self._values = defaultdict(float)  # (name, labels) -> value, for counters counted here
        self._reads = {}  # name -> callable: counters and gauges kept elsewhere
        self._histograms = {}
        self._labelled = set()  # families with labels show no sample until counted

    def counter(self, name, help_text, read=None, labelled=False):
        """A counter counted with `inc`, or read from `read()` (a count kept elsewhere)."""
        self._declare(name, "counter", help_text)
        if read is not None:
            self._reads[name] = read
        if labelled:
            self._labelled.add(name)

    def gauge(self, name, help_text, read):
        self._declare(name, "gauge", help_text)
        self._reads[name] = read

    def histogram(self, name, help_text, histogram):
        self._declare(name, "histogram", help_text)
        self._histograms[name] = histogram

    def _declare(self, name, kind, help_text):
        if kind == "counter" and not name.endswith("_total"):
            raise ValueError(f"counter {name} must end in _total")
        self._families[name] = (kind, help_text)

    def inc(self, name, amount=1, **labels):
        if self._families.get(name, ("",))[0] != "counter":
            raise KeyError(f"{name} is not a declared counter")
        self._values[(name, tuple(sorted((k, str(v)) for k, v in labels.items())))] += amount

    def value(self, name, **labels):
        return self._values.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))), 0.0)

    def render(self):
        by_name = defaultdict(list)
        for (name, labels), value in self._values.items():
            by_name[name].append((labels, value))
        lines = []
        for name, (kind, help_text) in sorted(self._families.items()):
            lines.append(f"# HELP {name} {_escape_help(help_text)}")
            lines.append(f"# TYPE {name} {kind}")
            if name in self._histograms:
                histogram = self._histograms[name]
                for bound, count in histogram.cumulative():
                    lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {count}')
                lines.append(f"{name}_sum {_number(histogram.sum)}")
                lines.append(f"{name}_count {histogram.count}")
            elif name in self._reads:
                lines.append(f"{name} {_number(self._reads[name]())}")
            elif by_name[name]:
                for labels, value in sorted(by_name[name]):
                    lines.append(f"{name}{_labels(labels)} {_number(value)}")
            elif name not in self._labelled:
                lines.append(f"{name} 0")
        return "\n".join(lines) + "\n"


def _labels(labels):
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels) + "}"


def _escape_label(value):
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value):
    value = float(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)

"""The server's own counters and gauges, rendered in Prometheus text format."""
from collections import defaultdict


class Telemetry:
    def __init__(self):
        self.counters = defaultdict(float)
        self.gauges = {}  # name -> callable returning the current value
        self.help = {}

    def inc(self, name, amount=1, **labels):
        key = (name, tuple(sorted(labels.items())))
        self.counters[key] += amount

    def gauge(self, name, read, help_text=""):
        self.gauges[name] = read
        self.help[name] = help_text

    def value(self, name, **labels):
        return self.counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def render(self):
        lines, typed = [], set()
        for (name, labels), value in sorted(self.counters.items()):
            if name not in typed:
                lines.append(f"# TYPE {name} counter")
                typed.add(name)
            label_text = ",".join(f'{k}="{v}"' for k, v in labels)
            lines.append(f"{name}{{{label_text}}} {value:g}" if label_text else f"{name} {value:g}")
        for name, read in sorted(self.gauges.items()):
            if self.help.get(name):
                lines.append(f"# HELP {name} {self.help[name]}")
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {float(read()):g}")
        return "\n".join(lines) + "\n"

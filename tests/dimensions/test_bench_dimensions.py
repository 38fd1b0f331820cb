"""The dimensions benchmark runs and measures every figure against its baseline: whole
requests of each ingest path through the real application with its dimension step and
with a no-op one, the domain work alone, each step alone."""
import pytest

from bench import dimensions
from bench.report import Section


class Context:
    """What the benchmark reads of `python -m bench`'s context: a scratch directory and an influxd."""

    def __init__(self, influxd, work_dir):
        self.influxd, self.work_dir = influxd, str(work_dir)
        self.databases = 0

    def database(self, label):
        self.databases += 1
        return f"bench_{label}_{self.databases}"


@pytest.mark.slow
def test_dimensions_benchmark(influxd, tmp_path):
    section = Section("dimensions")
    dimensions.dimensions(Context(influxd, tmp_path), section, sizes={"rounds": 2, "window_s": 0.05})
    paths = len(dimensions.PATHS)
    assert [figure.what for figure in section.figures[:2 * paths]] == [
        f"{label}: {what} per request, with dimensions" for label, _ in dimensions.PATHS for what in ("CPU", "wall")]
    assert [figure.what.split(",")[0] for figure in section.figures[2 * paths:3 * paths]] == ["domain work alone"] * paths
    for figure in section.figures:
        assert figure.value > 0 and figure.baseline > 0, figure
    assert section.figures[3 * paths].what == "User-Agent, a string seen before (cache)"
    cached, uncached = section.figures[3 * paths].value, section.figures[3 * paths].baseline
    assert cached < uncached / 5  # the cache is what makes a parse per request affordable

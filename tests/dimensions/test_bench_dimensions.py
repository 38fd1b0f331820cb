"""The dimensions benchmark runs and measures every figure against its baseline."""
import pytest

from bench import dimensions
from bench.report import Section


@pytest.mark.slow
def test_dimensions_benchmark():
    section = Section("dimensions")
    dimensions.dimensions(None, section)
    assert [figure.what.split(":")[0] for figure in section.figures[:3]] == ["dimensions of a request"] * 3
    # Then each ingest path with its dimensions and without, in the same run.
    assert [figure.what for figure in section.figures[6:]] == [
        "POST JSON, one sample with tags, with dimensions", "POST JSON, 100 samples of 10 peers, with dimensions",
        "POST JSON, a raw getStats() report, with dimensions", "websocket frame of two deltas, with dimensions"]
    for figure in section.figures:
        assert figure.value > 0 and figure.baseline > 0, figure
    cached, uncached = section.figures[3].value, section.figures[3].baseline
    assert cached < uncached / 5  # the cache is what makes a parse per request affordable

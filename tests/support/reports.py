"""Real Chromium getStats() reports (tests/data/README.md)."""
import pathlib

CHROMIUM_FIXTURE = pathlib.Path(__file__).resolve().parents[1] / "data" / "chromium-loopback-audio-video.json"

"""The settings object: every option typed once, durations in seconds."""
import dataclasses
import datetime
import os
import subprocess
import sys

import pytest

import server
from rtcscope.settings import Settings, SettingsError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def defaults(**changes):
    return {**server.options.as_dict(), **changes}


def test_every_option_has_a_setting():
    """server.py's options (not tornado's own logging ones), but --config, which only reads the file."""
    defined = set(server.options.group_dict(server.__file__))
    assert "influxdb_url" in defined
    assert {field.name for field in dataclasses.fields(Settings)} == defined - {"config"}


def test_defaults_are_typed_durations_in_seconds():
    settings = Settings.from_options(defaults())
    assert (settings.tick, settings.flush_interval, settings.call_timeout, settings.max_skew) == (1.0, 0.5, 15.0, 300.0)
    assert (settings.new_calls_window, settings.client_timeout, settings.alert_retry) == (60.0, 60.0, 600.0)
    assert settings.wal_fsync == 1.0
    assert settings.cors_origins == ("*",) and settings.ws_origins == () and settings.alert_webhooks == ()
    assert settings.public_url == "http://127.0.0.1:8080"
    assert (settings.retention_limit, settings.retention_seconds) == (30 * 86400, 30 * 86400)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.tick = 2.0


def test_values_as_the_options_or_a_test_give_them():
    settings = Settings.from_options(defaults(tick=datetime.timedelta(milliseconds=250), call_timeout=3, retention="inf",
                                              cors_origins=["https://a.example"], public_url="https://rtc.example"))
    assert settings.tick == 0.25 and isinstance(settings.call_timeout, float) and settings.call_timeout == 3.0
    assert (settings.retention_limit, settings.retention_seconds) == (None, 400 * 86400)
    assert settings.cors_origins == ("https://a.example",)
    assert settings.public_url == "https://rtc.example"


@pytest.mark.parametrize("given, seconds", [("always", None), ("1s", 1.0), (" 1.5s ", 1.5), ("200ms", 0.2), (0.05, 0.05)])
def test_wal_fsync(given, seconds):
    assert Settings.from_options(defaults(wal_fsync=given)).wal_fsync == seconds


@pytest.mark.parametrize("given", ["soon", "1m", "ms", "-1s"])
def test_wal_fsync_refuses_what_it_cannot_read(given):
    with pytest.raises(SettingsError, match=r"--wal-fsync=.*: give a duration \(1s, 200ms\) or 'always'"):
        Settings.from_options(defaults(wal_fsync=given))


def test_graph_lines_refuses_a_negative_count():
    assert Settings.from_options(defaults()).graph_lines == 12
    assert Settings.from_options(defaults(graph_lines=0)).graph_lines == 0
    with pytest.raises(SettingsError, match=r"--graph-lines=-1: give 0 or more calls"):
        Settings.from_options(defaults(graph_lines=-1))


def test_a_bad_setting_stops_the_start():
    result = subprocess.run([sys.executable, "server.py", "--wal-fsync=soon", "--wal-dir=", "--spool-dir=",
                             "--influxdb-url=http://127.0.0.1:9"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "cannot start: --wal-fsync=soon: give a duration (1s, 200ms) or 'always'" in result.stderr


def test_dimension_settings():
    settings = Settings.from_options(defaults())
    assert settings.peer_tags == ("region", "app_version", "media_server")
    assert (settings.geoip_db, settings.max_dimension_values, settings.explain_min_poor) == ("", 1000, 5)
    assert Settings.from_options(defaults(peer_tags=" team, release ,team")).peer_tags == ("team", "release")
    assert Settings.from_options(defaults(peer_tags=["team", "release"])).peer_tags == ("team", "release")
    assert Settings.from_options(defaults(peer_tags="")).peer_tags == ()
    for bad, message in (({"peer_tags": "browser"}, "is taken"), ({"peer_tags": "state"}, "is taken"),
                         ({"peer_tags": "9lives"}, "is not a tag name"), ({"max_dimension_values": 0}, "at least 1")):
        with pytest.raises(SettingsError, match=message):
            Settings.from_options(defaults(**bad))


@pytest.mark.parametrize("option, message", [
    ("--peer-tags=region,browser", "cannot start: --peer-tags: 'browser' is taken"),
    ("--geoip-db=/nonexistent/GeoLite2-City.mmdb", "cannot start: --geoip-db /nonexistent/GeoLite2-City.mmdb:")])
def test_bad_dimension_options_stop_the_start(option, message):
    result = subprocess.run([sys.executable, "server.py", option, "--wal-dir=", "--spool-dir=",
                             "--influxdb-url=http://127.0.0.1:9"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr

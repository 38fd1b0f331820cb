"""browser and OS from real User-Agent strings, parsed once per distinct string."""
import re
import subprocess

import pytest

from rtcscope.dimensions import useragent
from rtcscope.dimensions.useragent import UserAgents
from tests.support.reports import HEADLESS_CHROMIUM

# The User-Agent of /usr/bin/chromium, headless, as its own webrtc-internals dump recorded it.

# Real browsers' strings, each with what SPEC §15 expects of it (the parser's families, majors).
REAL = [
    (HEADLESS_CHROMIUM, {"browser": "HeadlessChrome", "browser_version": "156", "os": "Linux"}),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
     {"browser": "Chrome", "browser_version": "131", "os": "Windows", "os_version": "10"}),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
     "Safari/537.36", {"browser": "Chrome", "browser_version": "131", "os": "Mac OS X", "os_version": "10"}),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
     {"browser": "Firefox", "browser_version": "133", "os": "Windows", "os_version": "10"}),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
     {"browser": "Firefox", "browser_version": "133", "os": "Ubuntu"}),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
     "Safari/605.1.15", {"browser": "Safari", "browser_version": "18", "os": "Mac OS X", "os_version": "10"}),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
     "Safari/537.36 Edg/131.0.0.0", {"browser": "Edge", "browser_version": "131", "os": "Windows", "os_version": "10"}),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
     "Mobile/15E148 Safari/604.1", {"browser": "Mobile Safari", "browser_version": "18", "os": "iOS", "os_version": "18"}),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
     {"browser": "Chrome Mobile", "browser_version": "131", "os": "Android", "os_version": "10"}),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
     {"browser": "Chrome Mobile iOS", "browser_version": "131", "os": "iOS", "os_version": "18"}),
    ("Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
     {"browser": "Firefox Mobile", "browser_version": "133", "os": "Android", "os_version": "14"}),
    ("Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 "
     "Chrome/122.0.0.0 Mobile Safari/537.36",
     {"browser": "Samsung Internet", "browser_version": "26", "os": "Android", "os_version": "14"}),
]


@pytest.fixture(scope="module")
def user_agents():
    return UserAgents()


@pytest.mark.parametrize("header, expected", REAL, ids=[expected["browser"] + "/" + expected["os"]
                                                       for _, expected in REAL])
def test_real_user_agents(user_agents, header, expected):
    assert user_agents.parse(header) == expected


@pytest.mark.parametrize("header", [None, "", "Mozilla/5.0", "x" * 10_000, "\x00\xff"])
def test_nothing_known_is_nothing_guessed(user_agents, header):
    assert user_agents.parse(header) == {}


def test_a_tool_has_a_browser_and_no_os(user_agents):
    assert user_agents.parse("curl/8.5.0") == {"browser": "curl", "browser_version": "8"}


def test_parsed_once_per_distinct_string():
    user_agents = UserAgents(cache_size=2)
    calls = []
    parse = user_agents.parse_uncached
    user_agents.parse_uncached = lambda header: calls.append(header) or parse(header)
    chrome, firefox, safari = (header for header, _ in REAL[1:4])
    for _ in range(3):
        assert user_agents.parse(chrome) == REAL[1][1]
    assert calls == [chrome]
    user_agents.parse(firefox)
    user_agents.parse(chrome)  # now the most recent: the next one evicts firefox
    user_agents.parse(safari)
    assert len(user_agents._cache) == 2
    user_agents.parse(chrome)
    user_agents.parse(firefox)
    assert calls == [chrome, firefox, safari, firefox]


def test_the_cache_holds_no_user_agent(user_agents):
    user_agents.parse(REAL[1][0])
    assert not any(isinstance(key, str) for key in user_agents._cache)


def test_an_answer_is_the_callers_to_change(user_agents):
    found = user_agents.parse(REAL[1][0])
    found["browser"] = "x"
    assert user_agents.parse(REAL[1][0]) == REAL[1][1]


def test_a_long_header_is_cut_before_parsing():
    """Two 5 KB headers that differ past the cut are one string to the parser and its cache."""
    user_agents = UserAgents()
    calls = []
    parse = user_agents.parse_uncached
    user_agents.parse_uncached = lambda header: calls.append(header) or parse(header)
    padded = REAL[1][0].ljust(useragent.MAX_USER_AGENT, "y")
    assert user_agents.parse(padded + "a" * 5000) == REAL[1][1]
    assert user_agents.parse(padded + "b" * 5000) == REAL[1][1]
    assert calls == [padded]


@pytest.mark.browser
def test_this_machines_chromium(user_agents, tmp_path):
    """The User-Agent /usr/bin/chromium sends today, asked of the browser itself."""
    page = tmp_path / "ua.html"
    page.write_text("<body><script>document.body.textContent = navigator.userAgent</script></body>")
    done = subprocess.run(["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=60, check=True)
    header = re.search(r"<body>(.*)</body>", done.stdout, re.S).group(1).strip()
    version = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True, timeout=30).stdout
    major = re.search(r"Chromium (\d+)\.", version).group(1)
    assert user_agents.parse(header) == {"browser": "HeadlessChrome", "browser_version": major, "os": "Linux"}

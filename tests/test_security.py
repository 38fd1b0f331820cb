"""Who may write, who may read: ingest keys, the read token, CORS and websocket
origins, and the headers pages are served with."""
import json
import os
import signal
import urllib.error
import urllib.request

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClosedError, websocket_connect

from rtcscope.credentials import Secrets
from tests.support.api import assert_error, get, post
from tests.support.influxd import count_points
from tests.support.metrics import exposed
from tests.support.processes import ServerProcess
from tests.support.samples import now_ms
from tests.support.waits import eventually


def sample(mark, call="sec"):
    return {"call": call, "ts": now_ms() - mark * 1000, "stats": {"mark": mark}}  # distinct per mark


def stored_marks(influxd, database):
    return sorted(row["mark"] for row in influxd.rows('SELECT "mark" FROM "rtc_stats" WHERE time > 0', database))


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "ingest-keys"
    path.write_text("# one key per line\nkey-alpha\n\n  key-beta  \n")
    return path


def test_secrets_match_exactly_in_constant_time_style():
    secrets = Secrets(values=["alpha", "b\u00e9ta"])
    assert secrets.enabled
    assert secrets.matches("alpha") and secrets.matches("b\u00e9ta")
    for wrong in ("", None, "alph", "alpha ", "ALPHA", "b\u00e9ta\x00", "x" * 10_000, "\ud800"):
        assert not secrets.matches(wrong)
    assert not Secrets().enabled


@pytest.mark.gen_test(timeout=60)
async def test_ingest_keys_401_403_and_nothing_stored(http_client, start_server, app_config, key_file,
                                                     influxd, database):
    application = await start_server(**{**app_config, "ingest_keys": str(key_file)})
    await application.store.setup()
    url = application.base_url + "/v1/stats/write/"

    status, body, response = await post(http_client, url, sample(1))
    assert_error(status, body, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    status, body, _ = await post(http_client, url, sample(2), headers={"Authorization": "Bearer key-gamma"})
    assert_error(status, body, 403, "forbidden")
    status, body, _ = await post(http_client, url + "?key=key-alph", sample(3), content_type="text/plain")
    assert_error(status, body, 403, "forbidden")
    status, body, _ = await post(http_client, url, sample(4), headers={"Authorization": "Basic a2V5LWFscGhh"})
    assert_error(status, body, 401, "unauthorized")

    status, body, _ = await post(http_client, url, sample(5), headers={"Authorization": "Bearer key-alpha"})
    assert status == 200 and body["accepted"] == 1
    # sendBeacon cannot set headers: the key rides in the query, the body is text/plain.
    status, body, _ = await post(http_client, url + "?key=key-beta", json.dumps(sample(6)),
                                 content_type="text/plain;charset=UTF-8")
    assert status == 200 and body["accepted"] == 1
    # A preflight carries no credentials and needs none.
    response = await http_client.fetch(url, method="OPTIONS", raise_error=False,
                                       headers={"Origin": "https://app.example",
                                                "Access-Control-Request-Headers": "authorization"})
    assert response.code == 204
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]

    await eventually(lambda: count_points(influxd, database, field="mark") == 2)
    assert stored_marks(influxd, database) == [5, 6]
    assert application.telemetry.value("rtcscope_ingest_refused_total", reason="unauthorized") == 2
    assert application.telemetry.value("rtcscope_ingest_refused_total", reason="forbidden") == 2


@pytest.mark.gen_test(timeout=60)
async def test_ingest_key_file_is_reread_when_it_changes(http_client, start_server, app_config, key_file):
    application = await start_server(**{**app_config, "ingest_keys": str(key_file)})
    url = application.base_url + "/v1/stats/write/"
    key_file.write_text("key-rotated\n")

    async def rotated():
        old = await post(http_client, url, sample(1), headers={"Authorization": "Bearer key-alpha"})
        new = await post(http_client, url, sample(2), headers={"Authorization": "Bearer key-rotated"})
        return old[0] == 403 and new[0] == 200

    await eventually(rotated, timeout=10, interval=0.3)


@pytest.mark.slow
def test_sighup_rereads_the_key_file(influxd, tmp_path, key_file):
    """Same size and mtime, so only the signal can make the server notice."""
    server = ServerProcess(str(tmp_path), influxdb_url=influxd.url, database="sighup",
                           spool_dir=tmp_path / "spool", ingest_keys=key_file).start()
    try:
        def status(key):
            request = urllib.request.Request(server.url + "/v1/stats/write/", data=json.dumps(sample(1)).encode(),
                                             headers={"Authorization": f"Bearer {key}"})
            try:
                return urllib.request.urlopen(request, timeout=10).status
            except urllib.error.HTTPError as error:
                return error.code

        assert status("key-alpha") == 200
        before = os.stat(key_file)
        key_file.write_text(key_file.read_text().replace("key-alpha", "key-delta"))
        os.utime(key_file, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert status("key-alpha") == 200 and status("key-delta") == 403
        server.signal(signal.SIGHUP)
        for _ in range(100):
            if status("key-delta") == 200:
                break
        assert status("key-delta") == 200 and status("key-alpha") == 403
        assert status("key-beta") == 200
    finally:
        server.stop()
    assert server.process.returncode == 0


@pytest.mark.gen_test(timeout=60)
async def test_cors_allow_list(http_client, start_server, app_config, influxd, database):
    application = await start_server(**{**app_config, "cors_origins": ["https://app.example"]})
    await application.store.setup()
    url = application.base_url + "/v1/stats/write/"

    status, body, response = await post(http_client, url, sample(1), headers={"Origin": "https://app.example"})
    assert status == 200
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Origin" in response.headers["Vary"]
    response = await http_client.fetch(url, method="OPTIONS", raise_error=False, headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST"})
    assert response.code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]

    # Another origin: refused outright (a text/plain beacon needs no preflight), nothing stored.
    status, body, response = await post(http_client, url, json.dumps(sample(2)), content_type="text/plain",
                                        headers={"Origin": "https://evil.example"})
    assert_error(status, body, 403, "origin_not_allowed")
    assert "Access-Control-Allow-Origin" not in response.headers
    response = await http_client.fetch(url, method="OPTIONS", raise_error=False, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert response.code == 403 and "Access-Control-Allow-Origin" not in response.headers
    # No Origin: not a browser, CORS does not apply.
    status, _, _ = await post(http_client, url, sample(3))
    assert status == 200
    await eventually(lambda: count_points(influxd, database, field="mark") == 2)
    assert stored_marks(influxd, database) == [1, 3]


@pytest.mark.gen_test(timeout=60)
async def test_cors_open_by_default(http_client, base_url, app):
    status, _, response = await post(http_client, base_url + "/v1/stats/write/", sample(1),
                                      headers={"Origin": "https://anywhere.example"})
    assert status == 200 and response.headers["Access-Control-Allow-Origin"] == "*"


TOKEN = "read-token-7f3a"


@pytest.mark.gen_test(timeout=60)
async def test_read_token_guards_reads_not_probes_or_ingest(http_client, start_server, app_config):
    application = await start_server(**{**app_config, "read_token": TOKEN})
    await application.store.setup()
    base_url = application.base_url
    guarded = ["/v1/calls/", "/v1/stats/?type=rtt", "/v1/stats/interval/?type=rtt&duration=10m",
               "/v1/calls/nope/", "/v1/metrics/", "/v1/nowhere", "/dashboard", "/graph/rtt/", "/calls/c-1/",
               "/ws/graph/rtt", "/v1/stats/writes/?type=rtt", "/v1/stats/write-x/?type=rtt", "/healthz/x"]
    for path in guarded:
        status, body, response = await get(http_client, base_url + path)
        assert_error(status, body, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="rtcscope"'
        status, body, _ = await get(http_client, base_url + path, headers={"Authorization": "Bearer wrong"})
        assert_error(status, body, 403, "forbidden")
    status, body, _ = await get(http_client, base_url + "/v1/calls/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and body["count"] == 0
    for path in ("/healthz", "/readyz", "/metrics"):
        status, _, _ = await get(http_client, base_url + path)
        assert status == 200, path
    status, body, _ = await post(http_client, base_url + "/v1/stats/write/", sample(1))
    assert status == 200 and body["accepted"] == 1


@pytest.mark.gen_test(timeout=60)
async def test_metrics_can_require_the_read_token(http_client, start_server, app_config):
    application = await start_server(**{**app_config, "read_token": TOKEN, "protect_metrics": True})
    status, body, _ = await get(http_client, application.base_url + "/metrics")
    assert_error(status, body, 401, "unauthorized")
    response = await http_client.fetch(application.base_url + "/metrics",
                                       headers={"Authorization": f"Bearer {TOKEN}"})
    assert exposed(response.body.decode(), "rtcscope_buffer_depth") is not None


@pytest.mark.gen_test(timeout=60)
async def test_page_token_becomes_an_httponly_cookie(http_client, start_server, app_config):
    application = await start_server(**{**app_config, "read_token": TOKEN})
    base_url = application.base_url
    response = await http_client.fetch(base_url + f"/graph/rtt/?range=10m&token={TOKEN}",
                                       follow_redirects=False, raise_error=False)
    assert response.code == 302
    assert response.headers["Location"] == "/graph/rtt/?range=10m"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"rtcscope_token={TOKEN};")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; behind TLS (X-Forwarded-Proto) it is set
    cookies = {"Cookie": f"rtcscope_token={TOKEN}"}
    status, _, _ = await get(http_client, base_url + "/v1/calls/", headers=cookies)
    assert status == 200
    response = await http_client.fetch(base_url + "/graph/rtt/?range=10m", headers=cookies, raise_error=False)
    assert response.code not in (401, 403)
    # A wrong token in the URL is refused, not turned into a cookie.
    response = await http_client.fetch(base_url + "/graph/rtt/?token=nope", follow_redirects=False,
                                       raise_error=False)
    assert response.code == 403 and "Set-Cookie" not in response.headers


@pytest.mark.gen_test(timeout=60)
async def test_read_token_file_is_reread(http_client, start_server, app_config, tmp_path):
    tokens = tmp_path / "read-tokens"
    tokens.write_text("token-one\n")
    application = await start_server(**{**app_config, "read_token_file": str(tokens)})
    url = application.base_url + "/v1/calls/"
    status, _, _ = await get(http_client, url, headers={"Authorization": "Bearer token-one"})
    assert status == 200
    tokens.write_text("token-two\n")

    async def rotated():
        old = await get(http_client, url, headers={"Authorization": "Bearer token-one"})
        new = await get(http_client, url, headers={"Authorization": "Bearer token-two"})
        return old[0] == 403 and new[0] == 200

    await eventually(rotated, timeout=10, interval=0.3)


@pytest.mark.gen_test(timeout=60)
async def test_security_headers(http_client, base_url, app):
    response = await http_client.fetch(base_url + "/v1/calls/")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    for path in ("/dashboard", "/graph/rtt/"):
        response = await http_client.fetch(base_url + path)
        assert response.headers["Content-Type"].startswith("text/html")
        policy = response.headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["script-src"] == "'self'"  # no inline scripts, no eval
        assert directives["frame-ancestors"] == "'none'"
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"


# --- websockets ----------------------------------------------------------------

async def open_socket(url, headers=None):
    """Connect and read the first message; (status, message) or (status, None) when refused."""
    try:
        connection = await websocket_connect(HTTPRequest(url, headers=headers or {}))
    except Exception as error:  # tornado raises HTTPClientError for a refused upgrade
        return getattr(error, "code", None), None
    try:
        message = await connection.read_message()
    except WebSocketClosedError:
        message = None
    connection.close()
    return 101, json.loads(message) if message else None


@pytest.mark.gen_test(timeout=60)
async def test_websocket_needs_the_read_token(http_client, start_server, app_config):
    application = await start_server(**{**app_config, "read_token": TOKEN})
    await application.store.setup()
    url = application.base_url.replace("http", "ws") + "/ws/graph/rtt"
    assert (await open_socket(url))[0] == 401
    assert (await open_socket(url, {"Authorization": "Bearer nope"}))[0] == 403
    assert (await open_socket(url + "?token=nope"))[0] == 403
    for headers, query in (({"Authorization": f"Bearer {TOKEN}"}, ""), ({"Cookie": f"rtcscope_token={TOKEN}"}, ""),
                           ({}, f"?token={TOKEN}")):
        status, message = await open_socket(url + query, headers)
        assert status == 101 and message["type"] == "snapshot" and message["metric"] == "rtt"


@pytest.mark.gen_test(timeout=60)
async def test_websocket_origin_same_origin_or_allow_list(http_client, start_server, app_config):
    application = await start_server(**{**app_config, "ws_origins": ["https://wall.example"]})
    await application.store.setup()
    base_url = application.base_url
    url = base_url.replace("http", "ws") + "/ws/graph/rtt"
    status, message = await open_socket(url, {"Origin": base_url})
    assert status == 101 and message["type"] == "snapshot"
    status, message = await open_socket(url, {"Origin": "https://wall.example"})
    assert status == 101 and message["type"] == "snapshot"
    assert (await open_socket(url, {"Origin": "https://evil.example"}))[0] == 403
    assert (await open_socket(url, {"Origin": base_url + ".evil.example"}))[0] == 403
    status, message = await open_socket(url)  # no Origin: not a browser
    assert status == 101 and message["type"] == "snapshot"


# --- the pages work under their Content-Security-Policy ---------------------------

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.browser
@pytest.mark.gen_test(timeout=120)
async def test_pages_run_under_the_policy_without_violations(http_client, base_url, app, tmp_path):
    from playwright.async_api import async_playwright

    call = f"csp-{now_ms()}"
    status, _, _ = await post(http_client, base_url + "/v1/stats/write/",
                              [{"call": call, "peer": "alice", "kind": "audio", "ts": now_ms() - i * 1000,
                                "stats": {"rtt": 30.0 + i, "packetsLost": i}} for i in range(5)])
    assert status == 200
    await eventually(lambda: app.writer.depth == 0)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            problems = []
            page.on("console", lambda message: message.type == "error" and problems.append(message.text))
            page.on("pageerror", lambda error: problems.append(str(error)))
            for path in ("/dashboard", "/graph/rtt/", f"/calls/{call}/"):
                response = await page.goto(base_url + path)
                assert response.status == 200
                assert "script-src 'self'" in response.headers["content-security-policy"]
                await page.wait_for_selector("canvas", timeout=20_000)  # a chart was drawn by the page's scripts
                await page.screenshot(path=str(tmp_path / (path.strip("/").replace("/", "_") + ".png")))
            assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
        finally:
            await browser.close()

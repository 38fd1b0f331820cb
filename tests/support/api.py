"""Requests to the server under test, over real HTTP: tornado's client for the
in-process server, urllib for server processes; answers and errors as the API gives them."""
import json
import re
import urllib.error
import urllib.request

from tornado.httpclient import HTTPRequest


async def post(http_client, url, body, content_type="application/json", headers=None):
    """POST and return (status, decoded JSON body, response)."""
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    request = HTTPRequest(url, method="POST", body=body,
                          headers={"Content-Type": content_type, **(headers or {})})
    response = await http_client.fetch(request, raise_error=False)
    return response.code, _json(response), response


async def get(http_client, url, headers=None):
    response = await http_client.fetch(url, raise_error=False, headers=headers)
    return response.code, _json(response), response


def _json(response):
    try:
        return json.loads(response.body)
    except (TypeError, ValueError):
        return None


def assert_error(status, document, expected_status, code=None):
    assert status == expected_status, document
    assert set(document) == {"error"}, document
    assert isinstance(document["error"]["message"], str) and document["error"]["message"]
    if code:
        assert document["error"]["code"] == code, document


def get_json(url, headers=None):
    """(status, decoded JSON body) of a GET, whatever the status."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def assert_pages_served(url):
    """/dashboard as HTML, each script and stylesheet it names, and the client library:
    what a server started away from this tree (an install, the binary) must find of its own."""
    with urllib.request.urlopen(url + "/dashboard", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/html")
        page = response.read().decode()
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    assert any(a.split("?")[0].endswith(".js") for a in assets), assets
    assert any(a.split("?")[0].endswith(".css") for a in assets), assets
    for asset in assets:
        with urllib.request.urlopen(url + asset, timeout=10) as response:
            assert response.status == 200 and response.read(), asset
    with urllib.request.urlopen(url + "/rtcscope.js", timeout=10) as response:
        assert b"RTCScope" in response.read()


def record_statements(store):
    """The statements `store` sends InfluxDB from now on, in a list (the store itself unchanged)."""
    statements = []
    send_query = store.answer

    async def recording(statement, *args, **kwargs):
        statements.append(statement)
        return await send_query(statement, *args, **kwargs)

    store.answer = recording
    return statements

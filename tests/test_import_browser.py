"""The /import page in a real headless Chromium: a captured webrtc-internals
dump picked with the file picker (or dropped) is uploaded and the page opens
the imported call's page, which shows its summary."""
import json
import urllib.parse

import pytest

from tests.data import dumps
from tests.support.browser import WAIT_MS, browser_page, wait_for_text


def recent_dump(tmp_path, name="dump.json"):
    path = tmp_path / name
    path.write_text(json.dumps(dumps.recent(dumps.AUDIO_VIDEO)))
    return path


@pytest.mark.browser
@pytest.mark.gen_test(timeout=90)
async def test_the_file_picker_uploads_a_dump_and_opens_its_call(http_client, base_url, app, tmp_path):
    path = recent_dump(tmp_path)
    async with browser_page(expected_statuses=(404,)) as page:  # the page polls until the call can be read
        await page.goto(base_url + "/import")
        assert await page.is_disabled("#import-submit")
        await page.fill("#import-call", "ticket:4711")
        await page.set_input_files("#import-file", str(path))
        assert "dump.json" in await page.text_content("#import-file-name")
        async with page.expect_navigation(timeout=WAIT_MS):
            await page.click("#import-submit")
        assert urllib.parse.urlsplit(page.url).path == "/calls/ticket%3A4711/"
        await wait_for_text(page, "#call-state", "ended")
        assert await page.text_content("#call-peers") == "8-1, 8-2"
        await page.wait_for_selector("#summary tbody tr", timeout=WAIT_MS)
        metrics = await page.eval_on_selector_all("#summary tbody tr td:first-child", "cells => cells.map(c => c.textContent)")
        assert any("rtt" in text.lower() or "round" in text.lower() for text in metrics), metrics


@pytest.mark.browser
@pytest.mark.gen_test(timeout=90)
async def test_a_dropped_file_is_taken_and_a_bad_dump_is_explained(http_client, base_url, app, tmp_path):
    async with browser_page(expected_statuses=(400,)) as page:
        await page.goto(base_url + "/import")
        # A drop carries a DataTransfer with the file; the call id is suggested from its name.
        await page.evaluate("""() => {
            const transfer = new DataTransfer();
            transfer.items.add(new File(['{"PeerConnections": {}}'], "broken-dump.txt", {type: "text/plain"}));
            document.getElementById("import-drop").dispatchEvent(new DragEvent("drop", {dataTransfer: transfer}));
        }""")
        assert await page.input_value("#import-call") == "broken-dump"
        await page.click("#import-submit")
        await wait_for_text(page, "#import-error", "no PeerConnections")
        assert urllib.parse.urlsplit(page.url).path == "/import"
        assert not await page.is_disabled("#import-submit")  # fix the file and try again


@pytest.mark.browser
@pytest.mark.gen_test(timeout=60)
async def test_the_import_page_fits_a_phone(http_client, base_url, app):
    async with browser_page(390, 844) as page:
        await page.goto(base_url + "/import")
        assert await page.get_attribute('nav a[href="/import"]', "aria-current") == "page"
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390


@pytest.mark.browser
@pytest.mark.gen_test(timeout=60)
@pytest.mark.app_config(max_import=100_000)
async def test_a_file_over_max_import_is_refused_before_upload(http_client, base_url, app, tmp_path):
    path = recent_dump(tmp_path, "too-big.json")
    assert path.stat().st_size > 100_000
    async with browser_page() as page:
        await page.goto(base_url + "/import")
        assert "up to 97 KiB" in await page.text_content("#import-file-name")
        await page.fill("#import-call", "too-big")
        await page.set_input_files("#import-file", str(path))
        await wait_for_text(page, "#import-error", "this server takes dumps up to 98 KiB")
        assert await page.is_disabled("#import-submit")


@pytest.mark.browser
@pytest.mark.gen_test(timeout=60)
async def test_the_page_checks_call_ids_with_the_servers_identifier_rule(http_client, base_url, app):
    async with browser_page() as page:
        await page.goto(base_url + "/import")
        checks = {}
        max_length = await page.eval_on_selector("#import-call", "input => input.maxLength")
        for call in ("room:{1}@eu-west_2.x", "a b", "é", "x" * 128):
            await page.fill("#import-call", call)
            checks[call] = await page.eval_on_selector("#import-call", "input => input.checkValidity()")
        # The file name's stem becomes a call id with the same rule: what is not an identifier is a dash.
        stem = await page.evaluate("""() => {
            const chars = document.getElementById('import-form').dataset.identifierChars;
            return 'my dump (2).json'.replace(/\\.json$/, '').replace(new RegExp(`[^${chars}]+`, 'g'), '-');
        }""")
    assert checks == {"room:{1}@eu-west_2.x": True, "a b": False, "é": False, "x" * 128: True}
    assert max_length == 128
    assert stem == "my-dump-2-"

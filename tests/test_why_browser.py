"""Why calls are bad, in a real headless Chromium against a real server and influxd: the dashboard's
why panel and breakdown, its list filtered to a cohort, and the call page's dimensions (SPEC §15)."""
import json

import pytest

from tests.test_dashboard_browser import FLEET_CONFIG, Fleet, good_calls, wait_for_dataset
from tests.test_pages_browser import browser_page, wait_for_text


@pytest.mark.browser
@pytest.mark.gen_test(timeout=90)
@pytest.mark.app_config(**FLEET_CONFIG)
async def test_a_server_without_the_explanation_says_so_and_the_list_still_works(http_client, base_url, app):
    """A server that does not answer /v1/fleet/explain/ or /v1/fleet/breakdown/ (one not upgraded yet
    behind the same address): the panels say so, the live list and its filter chip keep working."""
    fleet = Fleet(http_client, base_url)
    await fleet.write(good_calls(fleet, 3))
    async with browser_page(expected_statuses=(404,)) as page:
        missing = json.dumps({"error": {"code": 404, "message": "Not Found"}})
        for path in ("**/v1/fleet/explain/*", "**/v1/fleet/breakdown/*"):
            await page.route(path, lambda route: route.fulfill(status=404, content_type="application/json", body=missing))
        await page.goto(base_url + "/dashboard?metrics=rtt")
        await wait_for_dataset(page, "#live-calls", "total", 3)
        await wait_for_text(page, "#no-findings", "The explanation is not available on this server.")
        await wait_for_text(page, "#no-breakdown", "The breakdown is not available on this server.")
        assert await page.eval_on_selector_all("#findings li", "items => items.length") == 0
        assert await page.is_hidden("#filters")

        # a filter in the URL: the chip, the list from the server; its ✕ goes back to the whole live list
        await page.goto(base_url + "/dashboard?metrics=rtt&browser=Chrome")
        await wait_for_dataset(page, "#live-calls", "filtered", "loaded")
        assert await page.text_content("#filters .filter-chip") == "browser = Chrome✕"
        await page.click("#filters .filter-chip button")
        await wait_for_dataset(page, "#live-calls", "filtered", "")
        assert await page.is_hidden("#filters")
        assert await page.evaluate("location.search") == "?metrics=rtt"
        await wait_for_dataset(page, "#live-calls", "count", 3)

"""A real headless Chromium (Debian's, driven by playwright) for the pages and the client library."""
import contextlib

from playwright.async_api import async_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Pages that make a real call: fake camera and microphone, media that plays by itself.
CALL_ARGS = CHROMIUM_ARGS + ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                             "--autoplay-policy=no-user-gesture-required",
                             # A test page fulfilled by playwright, not by a server: Chromium would count it
                             # as a public page and block its websocket to 127.0.0.1 (/demo, served by the
                             # server itself, needs no such flag).
                             "--disable-features=LocalNetworkAccessChecks"]
WAIT_MS = 20_000


@contextlib.asynccontextmanager
async def browser_page(width=1400, height=900, expected_statuses=()):
    """A page that counts its document loads (history.replaceState is not one) and fails the test on a
    script error or an error on the console; answers with one of `expected_statuses` (a page that polls
    for what is not there yet, a refusal the test provokes) are the only console errors it allows."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            page.errors = []
            page.loads = []
            page.on("pageerror", lambda error: page.errors.append(str(error)))
            allowed = tuple(f"the server responded with a status of {status} " for status in expected_statuses)

            def on_console(message):
                if message.type == "error" and not any(text in message.text for text in allowed):
                    page.errors.append("console: " + message.text)

            page.on("console", on_console)
            page.on("domcontentloaded", lambda loaded: page.loads.append(loaded.url))
            yield page
            assert page.errors == []
        finally:
            await browser.close()


async def wait_for_text(page, selector, text):
    await page.wait_for_function(
        "([selector, text]) => (document.querySelector(selector) || {}).textContent?.includes(text)",
        arg=[selector, text], timeout=WAIT_MS)

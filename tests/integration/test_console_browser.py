"""The operator console in Debian's Chromium (driven by Playwright, which downloads no
browser) against the real gateway: as an operator uses it, mouse and keyboard."""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from gateway_tools.screenshots import VIEWPORTS, launch_chromium, open_page, sign_in
from tests.integration.conftest import ADMIN_KEY, Gateway

pytestmark = pytest.mark.integration
PAGES = ("Adapters", "Tenants", "Live", "Playground")
ANSWER_TIMEOUT_MS = 180_000  # one generation on a CPU runner


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@contextmanager
def new_page(browser: Browser, gateway: Gateway, width: int, height: int) -> Iterator[Page]:
    """A fresh page that records what must never happen: a script error, a CSP refusal,
    a request to another origin."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway.url)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text) if "Refused" in msg.text else None)
    page.on("request", lambda req: None if req.url.startswith(gateway.url) else
            problems.append(f"request to {req.url}"))  # fmt: skip
    try:
        yield page
    finally:
        context.close()
    assert problems == []


@pytest.fixture
def page(browser: Browser, gateway: Gateway) -> Iterator[Page]:
    with new_page(browser, gateway, *VIEWPORTS[0]) as page:
        yield page


def outcome(page: Page, name: str):
    return page.locator(f"#page-{name.lower()} .outcome").first


def test_a_wrong_key_is_refused_and_the_right_one_signs_in(page: Page, gateway: Gateway) -> None:
    page.goto(gateway.url + "/console")
    key = page.get_by_label("Admin key")
    key.fill("not-the-admin-key-0123456789")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-message")).to_contain_text("invalid admin key")
    expect(page.locator("#app")).to_be_hidden()
    expect(key).to_have_value("")
    sign_in(page, gateway.url, ADMIN_KEY)
    expect(page.locator("#nav-adapters")).to_have_attribute("aria-current", "page")
    assert ADMIN_KEY not in page.content()  # the key is in a script variable, not the page
    assert ADMIN_KEY not in page.url


@pytest.fixture
def console_demo(gateway: Gateway) -> Iterator[str]:
    """The adapter the test adds to the shared session gateway, deleted whole after it."""
    yield "console-demo"
    res = gateway.admin("DELETE", "/admin/adapters/console-demo")
    assert res.status_code in (200, 404), res.text  # 404: the test failed before adding it


def test_promote_and_roll_back_move_the_alias(
    page: Page, gateway: Gateway, tmp_path: Path, console_demo: str
) -> None:
    archive = tmp_path / "console-demo.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(gateway.store / "demo" / "v1", arcname="v1")
    sign_in(page, gateway.url, ADMIN_KEY)
    answer = outcome(page, "Adapters")

    def upload(version: str) -> None:
        page.get_by_label("Adapter name").fill("console-demo")
        page.get_by_label("Version", exact=True).fill(version)
        page.get_by_label("Archive (.tar, .tar.gz) of one PEFT folder").set_input_files(archive)
        page.get_by_role("button", name="Upload").click()

    for version in ("v1", "v2"):
        upload(version)
        expect(answer).to_contain_text(f"Upload console-demo {version}: HTTP 200")
    alias = page.locator('[data-alias="console-demo"]')
    expect(alias).to_have_text("current: v1")
    page.get_by_role("button", name="Promote console-demo v2").click()
    expect(alias).to_have_text("current: v2")
    expect(answer).to_contain_text("Promote console-demo v2: HTTP 200")
    page.get_by_role("button", name="Roll back console-demo").click()
    expect(alias).to_have_text("current: v1")
    upload("v2")  # exists: the API's typed error is shown as it came
    expect(answer).to_contain_text("HTTP 409")
    expect(answer.locator(".error-fields")).to_contain_text("adapter_version_exists")
    row = page.locator('[data-version="console-demo v2"]')
    page.get_by_role("button", name="Delete console-demo v2").click()
    page.get_by_role("button", name="Cancel").click()  # a confirmation, not a formality
    expect(row).to_be_visible()
    page.get_by_role("button", name="Delete console-demo v2").click()
    page.get_by_role("button", name="Delete v2").click()
    expect(row).to_have_count(0)
    listed = {a["name"]: a for a in gateway.admin("GET", "/admin/adapters").json()["adapters"]}
    assert [v["version"] for v in listed["console-demo"]["versions"]] == ["v1"]


def test_a_new_tenant_key_is_shown_once(page: Page, gateway: Gateway) -> None:
    sign_in(page, gateway.url, ADMIN_KEY)
    open_page(page, "Tenants")
    page.get_by_role("button", name="New tenant").click()
    page.get_by_label("Name", exact=True).fill("console-t1")
    page.get_by_label("Allowed adapters").fill("demo")
    page.get_by_label("Max tokens per request").fill("0")
    page.get_by_role("button", name="Save tenant").click()
    expect(page.locator("#tenant-max-tokens-error")).to_contain_text("at least 1")
    assert gateway.admin("GET", "/admin/tenants").text.count('"console-t1"') == 0  # not sent
    page.get_by_label("Max tokens per request").fill("64")
    page.get_by_role("button", name="Save tenant").click()
    key_field = page.get_by_label("API key")
    expect(key_field).to_be_visible()
    key = key_field.input_value()
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#key-copied")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == key
    page.get_by_role("button", name="Done, I stored it").click()
    expect(key_field).to_be_hidden()
    assert key not in page.content()  # shown once: gone from the page with the dialog
    expect(page.locator('[data-tenant="console-t1"]')).to_contain_text("Max tokens per request: 64")
    models = httpx.get(gateway.url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert [m["id"] for m in models.json()["data"]] == ["base", "demo"]
    page.get_by_role("button", name="Delete console-t1").click()
    page.get_by_role("button", name="Delete console-t1").last.click()  # the dialog's button
    expect(page.locator('[data-tenant="console-t1"]')).to_have_count(0)


def test_the_playground_answers_in_valid_json(page: Page, gateway: Gateway) -> None:
    sign_in(page, gateway.url, ADMIN_KEY)
    open_page(page, "Playground")
    page.get_by_label("Adapter", exact=True).select_option("demo")
    page.get_by_label("Named schema", exact=True).select_option("intent_classification")
    page.get_by_label("User message").fill("I was charged twice for my subscription")
    page.get_by_role("button", name="Send").click()
    answer = page.locator("#playground-answer")
    expect(answer).to_have_attribute("data-valid-json", "true", timeout=ANSWER_TIMEOUT_MS)
    assert {"intent", "confidence", "requires_human_agent"} <= set(json.loads(answer.inner_text()))
    expect(page.locator('[data-header="x-gateway-adapter"]')).to_have_text("demo")
    expect(page.locator('[data-header="x-gateway-adapter-version"]')).to_have_text("v1")
    expect(page.locator('[data-header="x-gateway-attempts"]')).to_have_text(re.compile(r"^[1-9]$"))
    expect(page.locator("#playground-result")).to_contain_text("HTTP 200 in")


def test_a_bad_schema_is_caught_in_the_page_or_refused_by_the_server(page: Page, gateway: Gateway):
    sent: list[str] = []
    page.on("request", lambda req: sent.append(req.url) if "/admin/playground" in req.url else None)
    sign_in(page, gateway.url, ADMIN_KEY)
    open_page(page, "Playground")
    page.get_by_label("A JSON Schema pasted here").check()
    schema = page.get_by_label("JSON Schema", exact=True)
    page.get_by_label("User message").fill("hello")
    for text, reason in (('{"type": "object",', "Not valid JSON"),
                         ("[1, 2]", "must be a JSON object"),
                         ('{"properties": {}}', 'needs a "type"')):  # fmt: skip
        schema.fill(text)
        page.get_by_role("button", name="Send").click()
        expect(page.locator("#pg-schema-error")).to_contain_text(reason)
    assert sent == []  # the page caught each one before sending
    schema.fill('{"type": "object", "properties": {"a": {"type": 5}}}')  # the server's turn
    page.get_by_role("button", name="Send").click()
    result = page.locator("#playground-result")
    expect(result).to_contain_text("HTTP 400", timeout=ANSWER_TIMEOUT_MS)
    expect(result.locator(".error-fields")).to_contain_text("schema_invalid")
    assert len(sent) == 1


def test_the_live_view_draws_the_gateways_own_metrics(page: Page, gateway: Gateway) -> None:
    res = gateway.post("/v1/classify", {"text": "refund please", "adapter": "demo"})
    assert res.status_code == 200, res.text
    sign_in(page, gateway.url, ADMIN_KEY)
    open_page(page, "Live")
    expect(page.locator("#page-live figure.chart")).to_have_count(3, timeout=20_000)
    wrong = {"Authorization": "Bearer not-a-tenant-key-0123456789"}
    res = httpx.post(gateway.url + "/v1/classify", json={"text": "hi"}, headers=wrong)
    assert res.status_code == 401  # counted: tenant "unauthenticated", code invalid_api_key
    errors = page.locator("#page-live figure.chart", has_text="Error ratio by code")
    expect(errors.locator("svg")).to_contain_text("invalid_api_key", timeout=20_000)
    tenants = page.locator("table.numbers", has_text="Per tenant")
    expect(tenants.locator("tbody th", has_text="alpha")).to_have_count(1)
    adapters = page.locator("table.numbers", has_text="Per adapter")
    expect(adapters.locator("tbody th", has_text="demo")).to_have_count(1)
    expect(page.locator("#page-live .summary")).to_contain_text("requests/s")


@pytest.mark.parametrize("size", VIEWPORTS, ids=lambda size: f"{size[0]}x{size[1]}")
def test_every_page_fits_the_screen(browser: Browser, gateway: Gateway, size) -> None:
    with new_page(browser, gateway, *size) as page:
        sign_in(page, gateway.url, ADMIN_KEY)
        for name in PAGES:
            open_page(page, name)
            if name == "Live":
                page.locator("#page-live figure.chart svg").first.wait_for(timeout=20_000)
            overflow = page.evaluate("document.documentElement.scrollWidth - innerWidth")
            assert overflow <= 0, f"{name} at {size}: {overflow} px wider than the screen"


def tab_to(page: Page, name: str) -> None:
    """Tab (forward only) until the focused element is called ``name``; focus must show."""
    for _ in range(80):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "(() => { const e = document.activeElement;"
            " return [e.getAttribute('aria-label') || e.textContent.trim(),"
            " getComputedStyle(e).outlineStyle]; })()"
        )
        if focused[0] == name:
            assert focused[1] != "none", f"{name} has no visible focus"
            return
    raise AssertionError(f"Tab never reached {name!r}")


def test_keyboard_alone_creates_and_deletes_a_tenant(page: Page, gateway: Gateway) -> None:
    page.goto(gateway.url + "/console")
    page.keyboard.type(ADMIN_KEY)  # the key field has focus on arrival
    page.keyboard.press("Enter")
    expect(page.locator("#app")).to_be_visible()
    tab_to(page, "Tenants")
    page.keyboard.press("Enter")
    tab_to(page, "New tenant")
    page.keyboard.press("Enter")
    page.keyboard.type("console-kbd")  # the form focuses its first field
    page.keyboard.press("Tab")
    page.keyboard.type("*")
    page.keyboard.press("Enter")  # submits the form
    expect(page.get_by_label("API key")).to_be_focused()
    tab_to(page, "Done, I stored it")
    page.keyboard.press("Enter")
    row = page.locator('[data-tenant="console-kbd"]')
    expect(row).to_be_visible()
    tab_to(page, "Delete console-kbd")
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Cancel")).to_be_focused()  # the safe default
    page.keyboard.press("Escape")
    expect(row).to_be_visible()
    expect(page.get_by_role("button", name="Delete console-kbd")).to_be_focused()  # went back
    page.keyboard.press("Enter")
    # wait for the dialog to take focus before tabbing, or the Tab lands on the page
    expect(page.get_by_role("button", name="Cancel")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#confirm-ok")).to_be_focused()
    page.keyboard.press("Enter")
    expect(row).to_have_count(0)


def test_a_dialog_reopened_before_its_close_event_still_answers(
    page: Page, gateway: Gateway
) -> None:
    """Escape then Enter, faster than the browser delivers the first "close" event (a busy
    machine): that late event must not settle the second confirmation, or "Delete" does
    nothing. The reopen is made before the event's task on purpose, so this is not luck."""
    sign_in(page, gateway.url, ADMIN_KEY)
    answers = page.evaluate(
        """async () => {
            const { confirmAction } = await import("/console/dialogs.js");
            const dialog = document.getElementById("confirm-dialog");
            const first = confirmAction("first?", "Delete a");
            dialog.close("cancel");  // its close event is queued, not yet delivered
            const second = confirmAction("second?", "Delete b");
            await new Promise((done) => setTimeout(done, 50));  // the late event arrives
            const stillOpen = dialog.open;
            document.getElementById("confirm-ok").click();
            return [await first, stillOpen, await second, dialog.open];
        }"""
    )
    assert answers == [False, True, True, False]


def test_a_key_refused_mid_session_returns_to_sign_in(page: Page, gateway: Gateway) -> None:
    """As when the admin key is rotated while the page is open: the next call's 401."""
    sign_in(page, gateway.url, ADMIN_KEY)
    refusal = {"error": {"message": "invalid admin key", "code": "invalid_api_key"}}
    page.route("**/admin/tenants", lambda route: route.fulfill(status=401, json=refusal))
    page.get_by_role("button", name="Tenants").click()
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#signin-message")).to_contain_text("invalid admin key")
    expect(page.get_by_label("Admin key")).to_be_focused()

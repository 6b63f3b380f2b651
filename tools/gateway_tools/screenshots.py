"""``gateway-tools console screenshots``: every console page at a desktop and a phone width,
taken in Debian's Chromium against a gateway this command starts for the purpose.

That gateway serves the repository's adapters (``demo``; ``banking77`` v2, then v3
promoted, so a rollback history shows) to two tenants, with traffic running, so each
page has something to show. Playwright drives the browser and never downloads one.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.common.usage import UsageError

DEFAULT_BROWSER = "/usr/bin/chromium"  # Debian's package (scripts/test.sh installs it)
VIEWPORTS = ((1280, 800), (390, 844))
LIVE_POLLS = 5  # intervals of the live view to wait for, so its lines have a shape
POLL_S = 3.0  # the live view's own interval (gateway/console/live.js)


def require_browser(executable: str) -> None:
    if not Path(executable).is_file():
        raise UsageError(
            f"no browser at {executable}: install Debian's chromium "
            "(apt-get install chromium) or pass --browser"
        )


def launch_chromium(playwright: Any, executable: str = DEFAULT_BROWSER) -> Any:
    """Headless Chromium from ``executable``: Playwright's own browser builds are never
    used, so nothing is downloaded."""
    require_browser(executable)
    return playwright.chromium.launch(executable_path=executable, headless=True)


def sign_in(page: Any, url: str, admin_key: str) -> None:
    page.goto(url + "/console")
    page.get_by_label("Admin key").fill(admin_key)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#app").wait_for()


def open_page(page: Any, name: str) -> None:
    page.get_by_role("button", name=name, exact=True).click()
    page.locator(f"#page-{name.lower()}").wait_for()


@dataclass(frozen=True)
class DemoGateway:
    url: str
    admin_key: str
    tenant_keys: dict[str, str]


@contextmanager
def demo_gateway(work: Path) -> Iterator[DemoGateway]:
    from gateway.config import REPO_ROOT
    from gateway.tenancy import generate_key, hash_key
    from gateway_tools.launch import launch

    store = work / "store"
    for name, version in (("demo", "v1"), ("banking77", "v2"), ("banking77", "v3")):
        shutil.copytree(REPO_ROOT / "adapters" / name / version, store / name / version)
    keys = {"alpha": generate_key(), "beta": generate_key()}
    tenants = [
        {"name": "alpha", "key_hashes": [hash_key(keys["alpha"])], "allowed_adapters": ["*"],
         "requests_per_minute": 600},
        {"name": "beta", "key_hashes": [hash_key(keys["beta"])], "allowed_adapters": ["demo"],
         "default_adapter": "demo", "max_tokens": 128, "max_concurrency": 4},
    ]  # fmt: skip
    (work / "tenants.yaml").write_text(yaml.safe_dump({"tenants": tenants}))
    admin_key = generate_key("admin-")
    env = {
        "GATEWAY_ADMIN_KEY": admin_key,
        "GATEWAY_METRICS_KEY": generate_key("metrics-"),
        "GATEWAY_AUTH_MODE": "tenants",
        "GATEWAY_TENANTS_FILE": str(work / "tenants.yaml"),
    }
    adapters = {"demo": "v1", "banking77": "v2"}
    with launch(work / "gateway.log", adapters=adapters, store=store, env=env) as running:
        demo = DemoGateway(running.url, admin_key, keys)
        admin = {"Authorization": f"Bearer {admin_key}"}
        for path, body in (("/admin/adapters", {"path": "banking77/v3"}),
                           ("/admin/adapters/banking77/promote", {"version": "v3"})):  # fmt: skip
            httpx.post(demo.url + path, json=body, headers=admin, timeout=120).raise_for_status()
        yield demo


@contextmanager
def traffic(demo: DemoGateway) -> Iterator[None]:
    """Requests from both tenants until the block ends, one refused (beta may not use
    banking77) so the error chart has a bar."""
    texts = ("I still have not received my new card", "Why was I charged twice?",
             "How do I reset my password?", "Can I get a refund for last month?")  # fmt: skip
    calls = itertools.cycle((("alpha", "banking77"), ("alpha", "demo"), ("beta", "demo"),
                             ("beta", "banking77")))  # fmt: skip
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(base_url=demo.url, timeout=120) as client:
            for text, (tenant, adapter) in zip(itertools.cycle(texts), calls, strict=False):
                if stop.is_set():
                    return
                headers = {"Authorization": f"Bearer {demo.tenant_keys[tenant]}"}
                body = {"text": text, "adapter": adapter}
                client.post("/v1/classify", json=body, headers=headers)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def capture(page: Any, demo: DemoGateway, out: Path, width: int) -> list[Path]:
    """Sign-in, then each page in turn, as one operator would see them."""
    shots: list[Path] = []

    def shot(name: str) -> None:
        path = out / f"{name}-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)

    page.goto(demo.url + "/console")
    shot("signin")
    sign_in(page, demo.url, demo.admin_key)
    page.locator("[data-alias]").first.wait_for()
    shot("adapters")
    open_page(page, "Tenants")
    page.get_by_role("button", name="Edit beta").click()
    shot("tenants")
    open_page(page, "Live")
    page.locator("#page-live figure.chart svg").first.wait_for()
    page.wait_for_timeout(LIVE_POLLS * POLL_S * 1000)
    shot("live")
    open_page(page, "Playground")
    page.get_by_label("Adapter", exact=True).select_option("banking77")
    page.get_by_label("User message").fill("I still have not received my new card")
    page.get_by_role("button", name="Send").click()
    page.locator("#playground-answer").wait_for(timeout=120_000)
    shot("playground")
    return shots


def cmd_console_screenshots(args: argparse.Namespace) -> int:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise UsageError("screenshots need Playwright: pip install -e '.[dev]'") from exc
    require_browser(args.browser)  # before a gateway starts for nothing
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="gateway-console-") as work,
        demo_gateway(Path(work)) as demo,
        traffic(demo),
        sync_playwright() as playwright,
    ):
        browser = launch_chromium(playwright, args.browser)
        for width, height in VIEWPORTS:
            page = browser.new_page(viewport={"width": width, "height": height})
            for path in capture(page, demo, out, width):
                print(path, flush=True)
            page.close()
        browser.close()
    return 0


def add_console_commands(sub: argparse._SubParsersAction) -> None:
    console = sub.add_parser("console", help="the operator console served at /console")
    console_sub = console.add_subparsers(dest="console_command", required=True)
    shots = console_sub.add_parser(
        "screenshots", help="start a demo gateway and photograph every console page"
    )
    shots.add_argument("--out", default="docs/console", help="folder for the PNG files")
    shots.add_argument("--browser", default=DEFAULT_BROWSER, help="a Chromium executable")
    shots.set_defaults(func=cmd_console_screenshots)

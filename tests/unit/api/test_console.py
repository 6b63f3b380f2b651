"""The console's static files: served only with an admin key configured, under a strict
Content-Security-Policy, revalidated by ETag, and free of anything that policy forbids."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from gateway.api.console import ASSETS, ASSETS_DIR, CONTENT_SECURITY_POLICY, load_assets
from gateway.config import REPO_ROOT, Settings
from gateway.server import create_app
from tests.adapter_factory import FAKE_BASE
from tests.fake_engine import FakeEngine

ADMIN = "admin-key-0123456789abcdef"
SCRIPTS = sorted(name for name in ASSETS if name.endswith(".js"))


def not_started(**settings: object) -> TestClient:
    """The console needs no engine: the app before start-up serves it as it is."""
    return TestClient(create_app(Settings(**settings), lambda _: (FakeEngine(), FAKE_BASE)))


@pytest.fixture
def client() -> TestClient:
    return not_started(admin_key=ADMIN)


@pytest.mark.parametrize("path", ["/console", "/console/main.js", "/console/console.css"])
def test_no_admin_key_no_console(path: str) -> None:
    res = not_started().get(path)
    assert res.status_code == 404
    assert res.json()["error"]["code"] == "not_found"
    assert "content-security-policy" not in res.headers


def test_the_page_comes_with_its_security_headers(client: TestClient) -> None:
    res = client.get("/console")
    assert res.status_code == 200
    assert res.headers["content-type"] == "text/html; charset=utf-8"
    csp = res.headers["content-security-policy"]
    assert csp == CONTENT_SECURITY_POLICY
    directives = dict(d.split(" ", 1) for d in csp.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == directives["form-action"] == "'none'"
    assert res.headers["x-content-type-options"] == "nosniff"
    assert res.headers["referrer-policy"] == "no-referrer"
    assert res.headers["cache-control"] == "no-cache"
    assert "set-cookie" not in res.headers


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_every_asset_is_served_and_revalidated(client: TestClient, name: str) -> None:
    res = client.get(f"/console/{name}")
    assert res.status_code == 200
    assert res.content == (ASSETS_DIR / name).read_bytes()
    assert res.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    etag = res.headers["etag"]
    again = client.get(f"/console/{name}", headers={"If-None-Match": f'W/"x", {etag}'})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert client.get(f"/console/{name}", headers={"If-None-Match": '"x"'}).status_code == 200


def test_script_and_style_types(client: TestClient) -> None:
    assert client.get("/console/main.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/console/console.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize(
    "path", ["/console/nope.js", "/console/..%2Fconfig.py", "/console/%2e%2e/server.py"]
)
def test_only_the_known_files_are_served(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


class _Markup(HTMLParser):
    """Collects what the CSP would block: inline scripts, style elements and attributes,
    event-handler attributes, and anything loaded from another origin."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "style":
            self.problems.append("a <style> element")
        if tag == "script":
            self._in_script = True
            if not names.get("src"):
                self.problems.append("a <script> without src")
        for name, value in attrs:
            if name == "style" or name.startswith("on"):
                self.problems.append(f"<{tag} {name}=...>")
            if name in ("src", "href") and value and re.match(r"^([a-z]+:)?//", value):
                self.problems.append(f"<{tag} {name}={value}> from another origin")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.problems.append("inline script code")


def test_the_page_has_no_inline_code_and_no_other_origin() -> None:
    markup = _Markup()
    markup.feed(ASSETS["index.html"].body.decode())
    assert markup.problems == []


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_keep_the_key_in_memory_and_text_as_text(name: str) -> None:
    """No storage or cookie for the key, no HTML built from strings, no eval."""
    source = ASSETS[name].body.decode()
    for banned in ("localStorage", "sessionStorage", "indexedDB", "document.cookie",
                   "innerHTML", "outerHTML", "insertAdjacentHTML", "eval(", "new Function",
                   "console.log"):  # fmt: skip
        assert banned not in source, f"{name} uses {banned}"


def test_every_imported_module_is_served() -> None:
    imported = {
        target
        for name in SCRIPTS
        for target in re.findall(r'from "\./([^"]+)"', ASSETS[name].body.decode())
    }
    assert imported <= set(ASSETS)
    assert set(SCRIPTS) - imported == {"main.js"}  # every other script is used


def test_the_package_ships_every_asset() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["gateway"]
    for name in ASSETS:
        assert any(fnmatch.fnmatch(f"console/{name}", p) for p in patterns), name


def test_a_file_of_an_unknown_type_is_refused(tmp_path) -> None:
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match=r"logo\.png"):
        load_assets(tmp_path)

"""The docs stay navigable and current: the configuration page is generated from
``Settings``, and every relative link in the README and ``docs/`` points at a file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings

from gateway.cli import main
from gateway.config import REPO_ROOT
from gateway.config_docs import render

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_configuration_page_matches_the_settings_model() -> None:
    committed = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render(), (
        "docs/configuration.md is stale: run `gateway config docs` and commit the result"
    )


def test_the_command_writes_the_page(tmp_path: Path) -> None:
    out = tmp_path / "configuration.md"
    assert main(["config", "docs", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render()


def test_a_setting_without_a_description_is_refused() -> None:
    class Undocumented(BaseSettings):
        host: str = Field(default="127.0.0.1", description="bind address")
        port: int = 8000

    with pytest.raises(ValueError, match="'port' has no description"):
        render(Undocumented, {"host": "HTTP"})


def test_sections_must_name_real_fields_and_start_at_the_first() -> None:
    class Documented(BaseSettings):
        host: str = Field(default="127.0.0.1", description="bind address")
        port: int = Field(default=8000, description="TCP port")

    assert "## Network" in render(Documented, {"host": "Network"})
    with pytest.raises(ValueError, match="lacks"):
        render(Documented, {"host": "Network", "hots": "Typo"})
    with pytest.raises(ValueError, match="must start a section"):
        render(Documented, {"port": "Network"})


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_relative_links_point_at_files(page: Path) -> None:
    targets = [
        link.split("#")[0]
        for link in LINK.findall(page.read_text(encoding="utf-8"))
        if not link.startswith(("http://", "https://", "#", "mailto:"))
    ]
    missing = [target for target in targets if not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(REPO_ROOT)} links to missing files: {missing}"

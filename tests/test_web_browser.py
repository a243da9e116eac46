"""kansa web in a real browser: Debian's Chromium (/usr/bin/chromium, installed by
.ci/run with fonts-ipafont-gothic) driven by Playwright; never 'playwright install'.

Screenshots go to $KANSA_WEB_SHOTS (default: the test's tmp dir) so a person can look at
them; the tests check what can be checked by machine: Japanese text on the page, a
Japanese font installed for it, no CSP violation, what each role sees."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from tests.serving import serving

import kansa
from kansa.policy.approvals import Approvals
from kansa.web.app import create_app
from kansa.web.auth import Access, token_digest

CHROMIUM = "/usr/bin/chromium"
NOW = 1764892800.0  # 2025-12-05T00:00:00Z
TOKENS = {r: r[0] * 24 for r in ("viewer", "auditor", "officer", "admin")}
SECRET = "患者の相談内容 ZX-42"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": CHROMIUM}


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    d = Path(os.environ.get("KANSA_WEB_SHOTS") or tmp_path / "shots")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, kansa.Ledger]]:
    led = kansa.Ledger.init(tmp_path / "home")
    led.append_many({
        "ts": f"2025-11-{6 + i % 25:02d}T09:{i % 60:02d}:00Z",
        "system": ("support-bot", "hr-bot", "契約レビュー")[i % 3], "subject": f"user-{i % 4}",
        "gen_ai.request.model": "gpt-4o-mini" if i % 2 else "claude-sonnet",
        "gen_ai.provider.name": "openai" if i % 2 else "anthropic",
        "outcome": "error" if i % 9 == 0 else "ok",
        "gen_ai.usage.input_tokens": 100 + i, "gen_ai.usage.output_tokens": 40,
        "input": SECRET, "output": "了解しました"} for i in range(180))
    led.checkpoint()
    Approvals(led.log.store).request(
        digest="sha256:00", record_id="held-1", snapshot="s", system="support-bot", app=None,
        model="gpt-4o-mini", obligations=["jp-ai-guidelines@1.1#human_oversight"],
        ttl_hours=24)
    access = Access(tokens={token_digest(t): (f"{r}-person", r) for r, t in TOKENS.items()})
    with serving(create_app(led, access, clock=lambda: NOW)) as url:
        yield url, led
    led.close()


def _login(page: Page, url: str, role: str) -> list[str]:
    """Log in through the form; returns the list CSP violations get appended to."""
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text)
            if "Content Security Policy" in m.text or "Refused to" in m.text else None)
    page.goto(url + "/login")
    page.fill("input[name=token]", TOKENS[role])
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")
    return violations


def test_a_japanese_font_is_installed() -> None:
    # without it Chromium draws Japanese as boxes (tofu): .ci/run installs it
    out = subprocess.run(["fc-list", ":lang=ja", "family"], capture_output=True, text=True)
    assert out.stdout.strip(), "no Japanese font: apt-get install fonts-ipafont-gothic"


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_every_page_renders_in_both_languages(site: tuple[str, kansa.Ledger], page: Page,
                                              shots: Path, lang: str) -> None:
    url, led = site
    page.context.set_extra_http_headers({"Accept-Language": lang})
    violations = _login(page, url, "officer")
    words = {"ja": ("概要", "日別の呼び出し数", "記録", "承認待ち", "項目"),
             "en": ("Overview", "Calls per day", "Records", "Pending approvals", "Fields")}[lang]
    expect(page.locator("h1")).to_have_text(words[0])
    expect(page.locator("#per-day h2")).to_contain_text(words[1])
    expect(page.locator("#per-day svg rect.bar")).to_have_count(30)
    expect(page.locator("#systems")).to_contain_text("契約レビュー")
    page.screenshot(path=str(shots / f"overview-{lang}.png"), full_page=True)
    page.click("nav >> text=" + words[2])
    expect(page.locator("#records tbody tr")).to_have_count(50)
    page.screenshot(path=str(shots / f"records-{lang}.png"), full_page=True)
    page.click("#records tbody tr >> nth=0 >> a")
    expect(page.locator("#fields h2")).to_have_text(words[4])
    page.screenshot(path=str(shots / f"record-{lang}.png"), full_page=True)
    page.goto(url + "/approvals")
    expect(page.locator("h1")).to_have_text(words[3])
    expect(page.locator(".approval")).to_have_count(1)
    page.screenshot(path=str(shots / f"approvals-{lang}.png"), full_page=True)
    assert violations == []


def test_filter_then_next_page(site: tuple[str, kansa.Ledger], page: Page) -> None:
    url, _ = site
    violations = _login(page, url, "viewer")
    page.goto(url + "/records?lang=en")
    page.fill("input[name=system]", "hr-bot")
    page.select_option("select[name=outcome]", "ok")
    page.click("#filters button[type=submit]")
    expect(page).to_have_url(url + "/records?since=&until=&system=hr-bot&model=&subject="
                                   "&outcome=ok")
    rows = page.locator("#records tbody tr")
    # hr-bot is i % 3 == 1; errors are i % 9 == 0 (never hr-bot): 60 records, 50 on page 1
    expect(rows).to_have_count(50)
    expect(rows.nth(0).locator("td").nth(0)).to_have_text("178")
    page.click("#older")
    expect(rows).to_have_count(10)
    expect(rows.nth(0).locator("td").nth(0)).to_have_text("28")
    expect(rows.nth(9).locator("td").nth(0)).to_have_text("1")
    assert "before=" in page.url
    assert violations == []


def test_viewer_cannot_reach_content_even_by_url(site: tuple[str, kansa.Ledger],
                                                 page: Page, shots: Path) -> None:
    url, led = site
    _login(page, url, "viewer")
    rid = led.browse(limit=1).records[0].id
    page.goto(f"{url}/records/{rid}?lang=ja")
    expect(page.locator("#content-denied")).to_be_visible()
    expect(page.locator("#show-content")).to_have_count(0)
    page.screenshot(path=str(shots / "record-viewer-ja.png"), full_page=True)
    for path in ("/records/export.jsonl", "/records/export.csv", f"/records/{rid}/receipt"):
        resp = page.goto(url + path)
        assert resp is not None and resp.status == 403
        assert SECRET not in page.content()
    assert SECRET not in page.content()
    assert not [r for r in led.browse(limit=500).records if r.entry["kind"] == "kansa.event"]


def test_officer_views_content_and_the_view_is_in_the_ledger(
        site: tuple[str, kansa.Ledger], page: Page, shots: Path) -> None:
    url, led = site
    violations = _login(page, url, "officer")
    target = led.browse(limit=1).records[0]
    page.goto(f"{url}/records/{target.id}?lang=ja")
    expect(page.locator("body")).not_to_contain_text(SECRET)
    page.click("#show-content")
    expect(page.locator("#content-text")).to_contain_text(SECRET)
    page.screenshot(path=str(shots / "content-officer-ja.png"), full_page=True)
    newest = led.browse(limit=1).records[0]
    assert newest.entry["kind"] == "kansa.event"
    assert newest.entry["attributes"]["kansa.access.action"] == "view_content"
    assert newest.entry["attributes"]["kansa.access.record"] == target.id
    assert newest.entry["attributes"]["kansa.access.actor"] == "officer-person"
    expect(page.locator("#content-recorded")).to_contain_text(newest.id)
    # the access record is on the records page like any other
    page.goto(url + "/records?system=kansa")
    expect(page.locator("#records tbody tr")).to_have_count(1)
    expect(page.locator("#records tbody tr td").nth(2)).to_have_text("kansa.event")
    assert violations == []


def test_approve_from_the_queue(site: tuple[str, kansa.Ledger], page: Page) -> None:
    url, led = site
    violations = _login(page, url, "officer")
    page.goto(url + "/approvals?lang=en")
    page.fill(".approval input[name=reason]", "ticket CX-12 checked")
    page.click(".approval button[value=approve]")
    expect(page.locator("#decided")).to_contain_text("approved")
    expect(page.locator("#none-pending")).to_be_visible()
    (a,) = Approvals(led.log.store).list()
    assert (a.status, a.decided_by, a.note) == ("approved", "officer-person",
                                                "ticket CX-12 checked")
    assert violations == []

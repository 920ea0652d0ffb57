"""Open the fixture reports in headless Chromium: no console errors, no broken images or links."""

from __future__ import annotations

from pathlib import Path

from report_browser import Browser, require_chromium

PAGES = ("sub-01.html", "sub-02_ses-2.html", "sub-03.html", "group_report.html")


def test_fixture_reports_in_chromium(rendered, artifacts):
    out = Path(rendered["output_dir"])
    with Browser(require_chromium()) as browser:
        for name in PAGES:
            shot = artifacts / f"fixture_{name.removesuffix('.html')}.png"
            check = browser.check(out / name, shot)
            assert check.problems == [], f"{name}: {check.problems}"
            assert check.n_links > 10 and shot.stat().st_size > 10_000
            if name != "group_report.html":
                assert check.n_images >= 3, name
            print(f"{name}: {check.n_images} images, {check.n_links} links, screenshot {shot}")


def test_checker_catches_broken_pages(tmp_path: Path):
    page = tmp_path / "bad.html"
    page.write_text(
        '<html><body><img src="missing.svg"><a href="nowhere.html">x</a><a href="#nope">y</a>'
        '<a href="https://example.org/">z</a><script>console.error("boom"); undefinedFn();</script></body></html>'
    )
    with Browser(require_chromium()) as browser:
        check = browser.check(page)
    assert "missing.svg" in check.broken_images
    assert {"nowhere.html", "#nope", "https://example.org/"} <= set(check.broken_links)
    assert any("boom" in e for e in check.console_errors)
    assert any("undefinedFn" in e for e in check.console_errors)


def test_missing_chromium_fails_instead_of_skipping(monkeypatch):
    import pytest
    import report_browser

    monkeypatch.setattr(report_browser, "find_chromium", lambda: None)
    with pytest.raises(pytest.fail.Exception, match="setup_chromium.sh"):
        report_browser.require_chromium()

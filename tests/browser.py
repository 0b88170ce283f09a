"""Headless Chromium for the console's tests: find it, launch it, measure pages.

Debian's `chromium` (apt-get install -y chromium; `.ci/run` installs it) driven
by Playwright's Python driver with `executable_path`: no browser is ever
downloaded. Without it the browser tests skip with the reason, except under
CI, where they fail (as PostgreSQL tests do).
"""

from __future__ import annotations

import contextlib
import os
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser, Page

CHROMIUM = Path(os.environ.get("BANK_TEST_CHROMIUM", "/usr/bin/chromium"))
# What the pages must meet: WCAG 2.1 A and AA, and 4.5:1 for all text.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
MINIMUM_CONTRAST = 4.5

# Every visible piece of text on the page (outside Swagger UI), its colour and
# the background it is painted on (backgrounds composed up to the canvas).
_CONTRAST = """
() => {
  const parse = (value) => {
    const match = /rgba?\\(([^)]+)\\)/.exec(value || "");
    if (!match) return null;
    const parts = match[1].split(/[\\s,/]+/).filter(Boolean).map(Number);
    const alpha = parts.length > 3 ? parts[3] : 1;
    return { r: parts[0], g: parts[1], b: parts[2], a: alpha };
  };
  const over = (top, below) => ({
    r: top.r * top.a + below.r * (1 - top.a),
    g: top.g * top.a + below.g * (1 - top.a),
    b: top.b * top.a + below.b * (1 - top.a),
    a: 1,
  });
  const background = (element) => {
    const layers = [];
    for (let node = element; node; node = node.parentElement) {
      const colour = parse(getComputedStyle(node).backgroundColor);
      if (colour && colour.a > 0) {
        layers.push(colour);
        if (colour.a >= 1) break;
      }
    }
    const canvas = { r: 255, g: 255, b: 255, a: 1 };
    return layers.reverse().reduce((below, top) => over(top, below), canvas);
  };
  const luminance = ({ r, g, b }) => {
    const [R, G, B] = [r, g, b].map((channel) => {
      const c = channel / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * R + 0.7152 * G + 0.0722 * B;
  };
  const found = [];
  for (const element of document.querySelectorAll("body *")) {
    if (element.closest("#swagger-ui, script, style, title, desc")) continue;
    const own = [...element.childNodes].some(
      (node) => node.nodeType === Node.TEXT_NODE && node.textContent.trim(),
    );
    const seen = { checkOpacity: true, checkVisibilityCSS: true };
    if (!own || !element.checkVisibility(seen)) continue;
    const box = element.getBoundingClientRect();
    if (box.width <= 1 || box.height <= 1) continue;
    const style = getComputedStyle(element);
    const isSvg = element instanceof SVGElement;
    const text = parse(isSvg ? style.fill : style.color);
    if (!text) continue;
    const behind = background(isSvg ? element.ownerSVGElement || element : element);
    const shown = over(text, behind);
    const [light, dark] = [luminance(shown), luminance(behind)].sort((x, y) => y - x);
    found.push({
      text: element.textContent.trim().slice(0, 60),
      tag: element.tagName.toLowerCase(),
      colour: isSvg ? style.fill : style.color,
      ratio: Math.round(((light + 0.05) / (dark + 0.05)) * 100) / 100,
    });
  }
  return found;
}
"""
_UNLABELLED = """
() => [...document.querySelectorAll("input, select, textarea")]
  .filter((control) => control.type !== "hidden")
  .filter((control) => !(control.labels && control.labels.length)
    && !control.getAttribute("aria-label") && !control.getAttribute("aria-labelledby"))
  .map((control) => control.id || control.name || control.outerHTML)
"""


def chromium() -> Path:
    """Debian's Chromium; skips the test when it is missing (fails under CI)."""
    if CHROMIUM.exists():
        return CHROMIUM
    reason = f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so browser tests may not skip")
    pytest.skip(reason)


@contextlib.contextmanager
def launched_chromium() -> Iterator[Browser]:
    """Headless Chromium under Playwright, closed afterwards."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 (skip first)

    executable = chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable))
        try:
            yield browser
        finally:
            browser.close()


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA violations on the page as it is now."""
    script = files("axe_playwright_python").joinpath("axe.min.js").read_text()
    page.evaluate(script)
    results: dict[str, Any] = page.evaluate(
        "(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags}})",
        AXE_TAGS,
    )
    return [
        {
            "id": violation["id"],
            "help": violation["help"],
            "nodes": [node["target"] for node in violation["nodes"]][:5],
        }
        for violation in results["violations"]
    ]


def text_contrasts(page: Page) -> list[dict[str, Any]]:
    """Every visible text's colour against its background, as a ratio."""
    found: list[dict[str, Any]] = page.evaluate(_CONTRAST)
    return found


def low_contrast(page: Page) -> list[dict[str, Any]]:
    """The texts below 4.5:1 against their background."""
    return [text for text in text_contrasts(page) if text["ratio"] < MINIMUM_CONTRAST]


def unlabelled_controls(page: Page) -> list[str]:
    """The inputs, selects and text areas that no label names."""
    found: list[str] = page.evaluate(_UNLABELLED)
    return found

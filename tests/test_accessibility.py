"""Accessibility of the dashboard's markup and stylesheet.

The contrast check reads static/app.css as a browser would for these classes: the custom
properties of ``:root``, each rule's ``color`` and ``background``, and computes the WCAG 2
contrast ratio of every text and badge colour on every surface it is shown on.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STYLESHEET = Path(__file__).resolve().parents[1] / "static" / "app.css"
MINIMUM = 4.5  # WCAG 2 AA for normal-size text: badges are smaller than body text

_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
_DECLARATION = re.compile(r"([-\w]+)\s*:\s*([^;]+)")
_VAR = re.compile(r"var\((--[-\w]+)\)")
_HEX = re.compile(r"#[0-9a-fA-F]{3}(?:[0-9a-fA-F]{3})?\b")


def _stylesheet() -> dict[str, dict[str, str]]:
    """Declarations by selector (one entry per selector of a list), later rules winning."""
    text = re.sub(r"/\*.*?\*/", "", STYLESHEET.read_text(), flags=re.S)
    rules: dict[str, dict[str, str]] = {}
    for selectors, body in _RULE.findall(text):
        declarations = {name: value.strip() for name, value in _DECLARATION.findall(body)}
        for selector in selectors.split(","):
            rules.setdefault(" ".join(selector.split()), {}).update(declarations)
    return rules


RULES = _stylesheet()
PROPERTIES = {name: value for name, value in RULES[":root"].items() if name.startswith("--")}


def _colour(selector: str, prop: str) -> str:
    """The hex colour *selector* declares for *prop* (``color`` or ``background``)."""
    value = RULES[selector][prop]
    value = _VAR.sub(lambda match: PROPERTIES[match.group(1)], value)
    found = _HEX.search(value)
    assert found, f"{selector} {{ {prop}: {value} }} is not a hex colour this test can read"
    return found.group(0)


def _luminance(hex_colour: str) -> float:
    digits = hex_colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    channels = [int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    lighter, darker = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


# The surfaces text sits on: the page, cards and tables, notices, badges' own backgrounds.
SURFACES = {
    "page": ("body", "background"),
    "card": (".card", "background"),
    "notice": (".flash", "background"),
    "error notice": (".flash.error", "background"),
    "badge": (".badge", "background"),
    "header": ("header.top", "background"),
}
# Every text colour class, with the surfaces it appears on.
TEXT_ON_SURFACES = [
    ("body", "color", ["page", "card", "notice", "error notice", "badge"]),
    (".muted", "color", ["page", "card", "notice", "badge"]),
    ("th", "color", ["card"]),
    ("a", "color", ["page", "card", "notice"]),
    (".warning", "color", ["page", "card", "notice"]),
    (".field-error", "color", ["page", "card", "error notice"]),
    (".error", "color", ["page", "card", "error notice"]),
    (".legend", "color", ["page", "card"]),
    ("ul.diff del", "color", ["card"]),
    ("ul.diff ins", "color", ["card"]),
    (".badge.off", "color", ["badge"]),
    ("header.top", "color", ["header"]),
    ("header.top a", "color", ["header"]),
    ("dl.rule-options dt", "color", ["card"]),
    ("dl.facts dt", "color", ["card", "page"]),
    ("header.top .brand", "color", ["header"]),
    (".who", "color", ["header"]),
    ("button.link", "color", ["header"]),
    ("svg.chart text", "fill", ["card"]),
    (".impact-routes tr.loses td:nth-child(3)", "color", ["card"]),
]
# Badges and buttons: their own text colour on their own background.
OWN_BACKGROUND = [".badge.allowed", ".badge.enforce", ".badge.refused", ".badge.expired",
                  ".badge.report-only", ".badge.stale", ".badge.draft", "button", "button.danger",
                  "button.secondary", ".button.secondary", ".skip-link"]


def _text_cases():
    for selector, prop, surfaces in TEXT_ON_SURFACES:
        for surface in surfaces:
            yield pytest.param(selector, prop, surface, id=f"{selector} on {surface}")


@pytest.mark.parametrize(("selector", "prop", "surface"), list(_text_cases()))
def test_text_colours_have_a_contrast_of_at_least_4_5_on_their_surfaces(
        selector, prop, surface):
    background = _colour(*SURFACES[surface])
    ratio = contrast(_colour(selector, prop), background)
    assert ratio >= MINIMUM, f"{selector} on {surface} ({background}): {ratio:.2f}:1"


@pytest.mark.parametrize("selector", OWN_BACKGROUND)
def test_badges_and_buttons_have_a_contrast_of_at_least_4_5(selector):
    # What the selector does not set it has from the plain button (button.danger's text).
    background = _colour(selector if "background" in RULES[selector] else "button",
                         "background")
    foreground = _colour(selector if "color" in RULES[selector] else "button", "color")
    ratio = contrast(foreground, background)
    assert ratio >= MINIMUM, f"{selector}: {ratio:.2f}:1"


def test_the_contrast_computation_matches_known_ratios():
    assert contrast("#000", "#fff") == pytest.approx(21)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    # The badge colours that failed before this check: 4.44:1 and 4.46:1.
    assert contrast("#9a6700", "#fff4d6") < MINIMUM
    assert contrast("#1b7f3b", "#e6f4ea") < MINIMUM


def test_every_text_class_with_a_colour_is_checked():
    """A new class that sets a colour must join the lists above."""
    checked = {selector for selector, _prop, _surfaces in TEXT_ON_SURFACES} | set(OWN_BACKGROUND)
    # The current page's link is white on the header, as the brand is; .button is button.
    ignored = {'header.top a[aria-current="page"]', ".button"}
    coloured = {selector for selector, declarations in RULES.items()
                if "color" in declarations and not selector.startswith("svg")}
    assert coloured - checked - ignored == set()


def test_focus_is_visible_and_a_skip_link_leads_to_the_main_content(sign_in):
    assert "outline" in RULES[":focus-visible"]
    client = sign_in("viewer")
    html = client.get("/admin/rules").get_data(as_text=True)
    body = html[html.index("<body>"):]
    assert body.index('<a class="skip-link" href="#main">') < body.index("<header")
    assert '<main id="main" tabindex="-1">' in html

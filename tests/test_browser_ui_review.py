"""A new user's walk in headless Chromium: the text box, link and charts agree after an example; no control,
title or axis label is cut off or drawn over another (1400×1000 and 1024×768); screenshots in tests/artifacts/."""
from __future__ import annotations

from urllib.parse import parse_qs, quote, urlparse

import pytest

from analysis.datasets.probes import EXAMPLE_TEXTS
from tests.browser_support import selected_option, wait_for_app

pytestmark = pytest.mark.browser

WIDE, NARROW = (1400, 1000), (1024, 768)
CUT_TEXT = """() => {
  // texts of the main area that stick out of the nearest box that clips them (a label cut to 'Exclude…', 'S')
  const cut = [];
  const walker = document.createTreeWalker(document.querySelector('[data-testid="stMain"]'), NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.textContent.trim() || node.parentElement.closest('svg, canvas, [data-testid="stDataFrame"]')) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    const text = range.getBoundingClientRect();
    if (!text.width) continue;
    for (let el = node.parentElement; el && el.dataset.testid !== 'stMain'; el = el.parentElement) {
      if (getComputedStyle(el).overflowX === 'visible') continue;
      const box = el.getBoundingClientRect();
      if (text.right > box.right + 1 || text.left < box.left - 1) cut.push(node.textContent.trim().slice(0, 60));
      break;
    }
  }
  for (const input of document.querySelectorAll('[data-testid="stMain"] input')) {  // a select box's shown value
    if (input.value && input.scrollWidth > input.clientWidth + 1) cut.push('input: ' + input.value.slice(0, 60));
  }
  return cut;
}"""
GRID_TITLES = """() => [...document.querySelectorAll('.js-plotly-plot')]
  .filter(gd => gd._fullLayout.xaxis && gd._fullLayout.xaxis.side === 'top' && gd.querySelector('.gtitle'))
  .map(gd => [gd.querySelector('.gtitle').textContent, gd.querySelector('.gtitle').getBoundingClientRect().bottom,
              Math.min(...[...gd.querySelectorAll('.xtick text')].map(t => t.getBoundingClientRect().top))])"""
LABELS_ON_PLOTS = """() => {
  // axis tick labels drawn over any plot area (their own figure's other panels or another figure)
  const areas = [...document.querySelectorAll('.js-plotly-plot .nsewdrag')].map(a => a.getBoundingClientRect());
  const hits = [];
  for (const label of document.querySelectorAll('.js-plotly-plot .xaxislayer-above text, '
                                                + '.js-plotly-plot .yaxislayer-above text')) {
    const r = label.getBoundingClientRect();
    if (!r.width) continue;
    if (areas.some(a => r.left < a.right - 1 && r.right > a.left + 1 && r.top < a.bottom - 1 && r.bottom > a.top + 1))
      hits.push(label.textContent);
  }
  return hits;
}"""
TITLES_UNDER_TOOLBAR = """() => {
  // titles (in a figure, or written above it) covered by a visible chart toolbar
  const visible = el => { const s = getComputedStyle(el); return s.visibility !== 'hidden' && Number(s.opacity) > 0; };
  const bars = [...document.querySelectorAll('.modebar, [data-testid="stElementToolbar"]')].filter(visible)
    .map(b => b.getBoundingClientRect()).filter(b => b.width && b.height);
  const titles = [...document.querySelectorAll('.js-plotly-plot .gtitle, .js-plotly-plot .annotation-text, '
                                            + '[data-testid="stMarkdownContainer"] strong')];
  return titles.filter(t => { const r = t.getBoundingClientRect();
    return bars.some(b => r.left < b.right && r.right > b.left && r.top < b.bottom && r.bottom > b.top); })
    .map(t => t.textContent);
}"""


def _settle(page) -> None:
    """Wait until the script has finished and no spinner is left."""
    for _ in range(2):
        wait_for_app(page, 300_000)
        page.wait_for_function("() => !document.querySelector('[data-testid=\"stSpinner\"]')", timeout=300_000)


def _open(browser, app_url: str, path: str, size: tuple[int, int] = WIDE, figures: int = 1):
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.goto(app_url + "/")  # a fresh server's first session must start at the main script
    page.get_by_text("Head census").first.wait_for(timeout=120_000)
    page.goto(app_url + path)
    page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {figures}",
                           timeout=300_000)
    _settle(page)
    return page


def _text_box(page) -> str:
    return page.get_by_role("textbox", name="Text", exact=True).input_value()


def _link_text(page) -> str:
    """The text the page's link carries."""
    return parse_qs(urlparse(page.url).query).get("text", [""])[0]


def _strip_title(page) -> str:
    return page.evaluate("() => document.querySelectorAll('.js-plotly-plot')[0].layout.title.text")


def test_an_example_updates_the_text_box_the_link_and_every_token_picker(app_url, browser, artifacts_dir):
    paragraph = EXAMPLE_TEXTS["Paragraph"]
    page = _open(browser, app_url, "/flow?flow_token=9", figures=3)
    before = _strip_title(page)
    page.get_by_role("combobox", name="Examples").click()
    page.get_by_role("option", name="Paragraph").click()
    page.wait_for_url("**Eiffel**", timeout=60_000)
    page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot')[0].layout.title.text !== {before!r}",
                           timeout=120_000)
    _settle(page)
    assert _text_box(page) == paragraph
    position, token = selected_option(page, "Output token").split(": ", 1)
    assert int(position) > 13  # the paragraph's last token, not position 9 of the old text
    assert f"{token} ({position}) after" in _strip_title(page)
    page.screenshot(path=str(artifacts_dir / "ui-review-example.png"))

    page.get_by_text("All attention edges").click()  # the next action must keep the example
    page.wait_for_url("**flow_all_edges=1**", timeout=60_000)
    _settle(page)
    assert _text_box(page) == _link_text(page) == paragraph
    assert selected_option(page, "Output token") == f"{position}: {token}"
    assert f"{token} ({position}) after" in _strip_title(page)

    page.get_by_role("link", name="Token view").click()
    page.wait_for_url("**/token_view**", timeout=60_000)
    _settle(page)
    assert _text_box(page) == paragraph and selected_option(page, "Token") == f"{position}: {token}"
    box = page.get_by_role("textbox", name="Text", exact=True)
    box.fill("The cat sat on the mat.")
    box.press("Control+Enter")
    page.wait_for_function("() => new URLSearchParams(location.search).get('text') === 'The cat sat on the mat.'",
                           timeout=60_000)
    _settle(page)
    assert selected_option(page, "Examples") == "—"
    assert selected_option(page, "Token").startswith("6: ")


@pytest.mark.parametrize("size", [WIDE, NARROW], ids=["1400x1000", "1024x768"])
def test_lab_and_flow_controls_are_not_cut_off(app_url, browser, artifacts_dir, size):
    page = _open(browser, app_url, "/ablation_lab?ablate=L1H5:zero:0,L2H3:mean:0.5,L3H1:resample:2", size, 3)
    page.get_by_role("combobox", name="Preset").click()
    page.get_by_role("option", name="random heads").click()
    page.get_by_role("spinbutton", name="seed").wait_for(timeout=60_000)
    _settle(page)
    page.screenshot(path=str(artifacts_dir / f"ui-review-lab-{size[0]}.png"))
    assert page.evaluate(CUT_TEXT) == []
    for chart in ("Next-token probability", "after − before"):  # hover shows a chart's toolbar, if it has one
        page.locator(".js-plotly-plot").filter(has_text=chart).first.hover()
        page.wait_for_timeout(300)
        assert not [title for title in page.evaluate(TITLES_UNDER_TOOLBAR) if chart in title]
    page = _open(browser, app_url, "/flow", size, 3)
    page.screenshot(path=str(artifacts_dir / f"ui-review-flow-{size[0]}.png"))
    assert "Exclude sink" not in page.evaluate(CUT_TEXT)


def test_grid_titles_sit_above_the_head_labels(app_url, browser, artifacts_dir):
    for path in ("/census", "/ablation_lab?ablate=L1H5"):
        page = _open(browser, app_url, path)
        titles = page.evaluate(GRID_TITLES)
        assert titles and all(bottom <= top for _, bottom, top in titles), titles
    page.screenshot(path=str(artifacts_dir / "ui-review-lab-grid.png"))


@pytest.mark.parametrize("size", [WIDE, NARROW], ids=["1400x1000", "1024x768"])
def test_compare_panels_keep_their_labels_and_titles_clear(app_url, browser, artifacts_dir, size):
    second = quote("When Mary and John went to the big store, John gave a drink to")
    page = _open(browser, app_url, f"/compare?layer=24&head=4&compare_text={second}", size, 4)
    page.get_by_text("token pairs are compared").wait_for(timeout=60_000)
    assert page.evaluate(LABELS_ON_PLOTS) == []
    for index in range(3):  # first, second, difference: hover shows the toolbars
        figure = page.locator(".js-plotly-plot").nth(index)
        figure.scroll_into_view_if_needed()
        figure.hover()
        page.wait_for_timeout(300)
        assert page.evaluate(TITLES_UNDER_TOOLBAR) == []
    page.screenshot(path=str(artifacts_dir / f"ui-review-compare-{size[0]}.png"), full_page=True)


def test_overview_at_its_own_path_and_patching_keep_their_numbers_whole_at_1024(app_url, browser, artifacts_dir):
    page = _open(browser, app_url, "/overview", NARROW)
    assert not page.get_by_text("Page not found").count()
    assert page.get_by_role("heading", name="Model overview").count() == 1
    page.screenshot(path=str(artifacts_dir / "ui-review-overview-1024.png"))
    assert page.evaluate(CUT_TEXT) == []
    page = _open(browser, app_url, "/patching", NARROW, 2)
    page.get_by_text("Rank correlation estimate vs exact").wait_for(timeout=300_000)
    page.screenshot(path=str(artifacts_dir / "ui-review-patching-1024.png"))
    assert page.evaluate(CUT_TEXT) == []

"""Datasets and jobs in a real browser: upload a CSV with bad rows, run a sweep, and a teammate opens its link.

Also the row → page flow: pick a head in the grid, pick a row, open it in the head view.
"""
from __future__ import annotations

import pytest

from tests.browser_support import figure_index, plot_point, selected_option, wait_for_app

pytestmark = pytest.mark.browser

JOB_TIMEOUT_MS = 400_000
ROWS = ["text,note", "The cat sat on the mat because it was warm.,a", ",empty", "Alice met Bob at the station.,b",
        '"She said, ""hello"", and left.",c', "too,many,fields", "The river rose quickly after the storm.,d",
        '"When Mary and John went to the store, John gave a drink to",e']


def test_upload_sweep_share_and_a_teammate_opens_the_grid(app_url, browser, artifacts_dir, tmp_path):
    upload = tmp_path / "prompts.csv"
    upload.write_text("\n".join(ROWS) + "\n")
    page = browser.new_page(viewport={"width": 1500, "height": 1800})
    page.goto(app_url + "/")
    page.get_by_text("Datasets and jobs").wait_for(timeout=120_000)
    page.goto(app_url + "/datasets?ds_source=upload")
    page.locator('[data-testid="stFileUploader"]').wait_for(timeout=120_000)
    wait_for_app(page)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(upload))
    page.get_by_text("2 rows left out; the 5 good rows are kept").wait_for(timeout=60_000)
    assert page.get_by_text("row 2 (line 3): 'text' is empty").is_visible()
    assert page.get_by_text("row 5 (line 6): has 3 fields; the header has 2").is_visible()
    page.screenshot(path=str(artifacts_dir / "jobs-upload.png"), full_page=True)

    page.get_by_role("button", name="Start the sweep over 5 rows").click()
    page.wait_for_url("**job=*", timeout=60_000)
    page.get_by_text("Rows computed").wait_for(timeout=JOB_TIMEOUT_MS)
    wait_for_app(page)
    link = page.locator("code").filter(has_text="?job=").first.inner_text().strip()
    assert link.startswith(app_url) and "/datasets?job=" in link
    page.screenshot(path=str(artifacts_dir / "jobs-sweep.png"), full_page=True)

    teammate = browser.new_context().new_page()
    teammate.set_viewport_size({"width": 1500, "height": 2400})
    teammate.goto(link)
    teammate.get_by_text("Rows computed").wait_for(timeout=120_000)
    wait_for_app(teammate)
    assert teammate.get_by_text("5 of 5").is_visible()
    figure_index(teammate, "95 % intervals")
    grid = figure_index(teammate, "Mean previous_token over 5 rows")
    x, y = plot_point(teammate, 6, 18, index=grid)  # L18H6 in the mean grid
    teammate.mouse.click(x, y)
    teammate.get_by_text("L18H6 over the rows").wait_for(timeout=60_000)
    wait_for_app(teammate)
    teammate.screenshot(path=str(artifacts_dir / "jobs-teammate.png"), full_page=True)

    teammate.locator('[data-testid="stDataFrame"]').filter(has_text="row").first.wait_for()
    teammate.goto(link + "&sweep_row=4&layer=18&head=6")
    teammate.get_by_text("Row 4:").wait_for(timeout=60_000)
    wait_for_app(teammate)
    teammate.get_by_role("button", name="Open the row").click()
    teammate.get_by_role("heading", name="Model overview").wait_for(timeout=60_000)  # the default choice
    wait_for_app(teammate)
    assert "When Mary and John" in teammate.get_by_role("textbox", name="Text").input_value()
    teammate.goto(link + "&sweep_row=0&layer=18&head=6")
    teammate.get_by_text("Row 0:").wait_for(timeout=60_000)
    wait_for_app(teammate)
    teammate.get_by_role("combobox", name="Open this row in").click()
    teammate.get_by_role("option", name="Head view").click()
    wait_for_app(teammate)
    teammate.get_by_role("button", name="Open the row").click()
    teammate.wait_for_url("**/head_view**", timeout=60_000)
    wait_for_app(teammate)
    assert selected_option(teammate, "Layer") == "L18" and selected_option(teammate, "Head") == "H6"
    assert teammate.get_by_role("textbox", name="Text").input_value().startswith("The cat sat on the mat")

"""The report as a reader's browser shows it: a headless-Chromium screenshot at desktop width.

Skipped, with the reason, where no Chromium is installed (``apt-get install chromium`` as root;
``.ci/run`` tries that).
"""

from __future__ import annotations

import pytest
from PIL import Image

from robustnic.report import build_report
from robustnic.report.screenshot import DESKTOP_WIDTH, find_browser, screenshot
from tests.test_report import make_store

pytestmark = pytest.mark.skipif(
    find_browser() is None,
    reason="no headless browser: install chromium (apt-get install -y chromium) or set ROBUSTNIC_BROWSER",
)


def test_report_screenshot_at_desktop_width_is_not_blank(tmp_path):
    page = build_report(make_store(tmp_path / "s.sqlite"), tmp_path / "report")
    png = screenshot(page, tmp_path / "shot.png", width=DESKTOP_WIDTH, height=2400)
    img = Image.open(png).convert("RGB")
    assert img.size == (DESKTOP_WIDTH, 2400)
    colours = img.getcolors(maxcolors=1 << 24)
    background = max(colours)[0] / (img.width * img.height)
    assert len(colours) > 500 and background < 0.9, (len(colours), background)  # text, plots and panels drawn
    # the page's header (title, navigation) and the first section are drawn, not only the body colour
    top = img.crop((0, 0, img.width, 300)).getcolors(maxcolors=1 << 24)
    assert len(top) > 20
    # the content sits in the centred column of the desktop layout: the margins hold only the page colour
    for x in (2, img.width - 3):
        assert len(img.crop((x, 0, x + 1, img.height)).getcolors()) == 1, x

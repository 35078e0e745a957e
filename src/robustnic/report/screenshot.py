"""Screenshots of a report page with a headless Chromium (for the report's tests and docs/).

Nothing here is needed to build a report; it only looks at one the way a reader's browser does.

>>> from robustnic.report.screenshot import find_browser, screenshot
>>> if find_browser():                                          # doctest: +SKIP
...     screenshot("demo-out/report.html", "shot.png", width=1366)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

#: Browsers tried in order (Debian's ``chromium``, Ubuntu's ``chromium-browser``, Google's builds).
BROWSERS = ("chromium", "chromium-browser", "chromium-headless", "chrome-headless-shell", "google-chrome",
            "google-chrome-stable")
#: The desktop width the report is checked at, in CSS pixels.
DESKTOP_WIDTH = 1366


def find_browser() -> str | None:
    """The path of a headless-capable Chromium on ``PATH`` (``$ROBUSTNIC_BROWSER`` first), or None."""
    for name in (os.environ.get("ROBUSTNIC_BROWSER"), *BROWSERS):
        if name and (path := shutil.which(name)):
            return path
    return None


def screenshot(page: str | os.PathLike, out: str | os.PathLike, width: int = DESKTOP_WIDTH, height: int = 3000,
               browser: str | None = None, timeout: float = 120.0) -> Path:
    """Render the HTML file ``page`` at ``width`` × ``height`` CSS pixels into the PNG ``out``; return it.

    Runs ``browser`` (default :func:`find_browser`) headless with a throw-away profile, no sandbox
    (so it also runs as root in containers) and no scroll bars, at a device scale factor of 1.
    Raises ``FileNotFoundError`` without a browser, ``RuntimeError`` when it writes no image.
    """
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium found (tried $ROBUSTNIC_BROWSER, " + ", ".join(BROWSERS) + ")")
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="robustnic-browser-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--hide-scrollbars", "--no-first-run", "--force-device-scale-factor=1",
               f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={out}",
               Path(page).resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not out.is_file():
        raise RuntimeError(f"{Path(browser).name} wrote no screenshot (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    return out


__all__ = ["BROWSERS", "DESKTOP_WIDTH", "find_browser", "screenshot"]

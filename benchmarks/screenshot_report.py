#!/usr/bin/env python3
"""Screenshot a `serbench compare` report in headless Chromium: proof that the HTML renders offline.

    python benchmarks/screenshot_report.py reports/NAME/index.html shot.png [--width 1400 --height 2000]

Chromium runs with networking features off and a throw-away profile, so a page that needed the
network (a CDN script, a remote image) would show up broken in the PNG. Prints one JSON line:
the PNG's path and size and the fraction of pixels that are not white (a blank or failed render
is ~0). Exit 2 when no Chromium is installed (Debian: `apt-get install chromium`), 1 when the
screenshot is missing or blank.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(html: Path, png: Path, width: int = 1400, height: int = 2000, timeout: float = 120) -> dict:
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError(f"no Chromium found (looked for {', '.join(BROWSERS)}); "
                                "install it with `apt-get install chromium`")
    if not html.is_file():
        raise FileNotFoundError(f"{html}: no such report page")
    png = png.resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="serbench-chromium-") as profile:
        cmd = [browser, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
               f"--window-size={width},{height}", html.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not png.is_file():
        raise RuntimeError(f"Chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return {"png": str(png), **_inspect(png)}


def _inspect(png: Path) -> dict:
    from PIL import Image  # pillow comes with matplotlib

    with Image.open(png) as img:
        grey = img.convert("L")
        hist = grey.histogram()
        total = grey.width * grey.height
        return {"width": grey.width, "height": grey.height,
                "non_blank_fraction": round(1 - sum(hist[250:]) / total, 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("html", type=Path, help="the report's index.html")
    p.add_argument("png", type=Path, help="where to write the screenshot")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=2000)
    args = p.parse_args(argv)
    try:
        info = screenshot(args.html, args.png, args.width, args.height)
    except FileNotFoundError as exc:
        print(f"screenshot_report: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"screenshot_report: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(info))
    return 0 if info["non_blank_fraction"] > 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Screenshots of a subject report and the group report for docs/outputs.md.

Usage: ``python tests/reports/take_screenshots.py OUTPUT_DIR [DEST_DIR] [SUBJECT_REPORT]``
(DEST_DIR defaults to ``docs/figures``). Pages are checked like in the tests first.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from report_browser import Browser, find_chromium  # noqa: E402


def _shrink(png: Path) -> None:
    """Palette PNG (256 colours): a few hundred kB instead of MBs for a docs screenshot."""
    from PIL import Image

    with Image.open(png) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(png, optimize=True)


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    dest = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[2] / "docs" / "figures"
    subject = argv[2] if len(argv) > 2 else sorted(p.name for p in out.glob("sub-*.html"))[0]
    binary = find_chromium()
    if binary is None:
        print("chromium not found: run .ci/setup_chromium.sh", file=sys.stderr)
        return 1
    with Browser(binary) as browser:
        for page, name, height, anchor in (
            (subject, "report_subject.png", 2600, None),
            (subject, "report_subject_functional.png", 2600, "functional"),
            ("group_report.html", "report_group.png", 2600, None),
            ("group_report.html", "report_group_sites.png", 1500, "sites"),
        ):
            check = browser.check(out / page, dest / name, max_height=height, anchor=anchor)
            _shrink(dest / name)
            print(
                f"{page}: {check.n_images} images, {check.n_links} links, problems: {check.problems or 'none'}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

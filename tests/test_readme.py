"""The README shows what is real: its listing of studies/digits.yaml is the file itself."""

from __future__ import annotations

from helpers import REPO


def test_readme_lists_the_real_digits_study():
    readme = (REPO / "README.md").read_text()
    marker = "This is `studies/digits.yaml`, with every field explained:\n\n```yaml\n"
    assert marker in readme
    start = readme.index(marker) + len(marker)
    listing = readme[start:readme.index("```\n", start)]
    assert listing == (REPO / "studies" / "digits.yaml").read_text()

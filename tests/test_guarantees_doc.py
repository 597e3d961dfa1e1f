"""The README's "Guarantees" table names tests that exist (a promise cannot lose its test)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_guarantee_names_existing_tests():
    text = (ROOT / "README.md").read_text()
    section = text.split("#### Guarantees", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) > 10
    checked = 0
    for row in rows[1:]:
        current = None
        for ref in re.findall(r"`(tests/[\w/]+\.py(?:::\w+)?|::\w+)`", row):
            path, _, name = ref.partition("::")
            if path:
                current = ROOT / path
                assert current.is_file(), ref
            assert current is not None, row
            if name:
                assert re.search(rf"^def {name}\(", current.read_text(), re.M), ref
                checked += 1
        assert current is not None, f"no test named in: {row}"
    assert checked >= 15

"""Where the vendors' own specs and captured payloads live: ../shared/contracts, beside the repo.

They come from other public projects and are read at test time, never copied here. A user's fresh
clone has no ../shared, so the tests that need them skip with this reason; CI and this workplace
have them, and run every one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONTRACTS = REPO.parent / "shared" / "contracts"


def absent(path: Path) -> str:
    return f"vendor contracts absent: {path} (expected beside the repo in ../shared/contracts; a fresh clone has none)"


def require(path: Path) -> Path:
    """``path`` under the contracts folder, or skip the test with the reason."""
    if not path.exists():
        pytest.skip(absent(path))
    return path

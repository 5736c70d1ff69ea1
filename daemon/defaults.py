"""Where the shipped TOML (config/) lives: the source checkout, or the installed data files."""

from __future__ import annotations

import sys
from pathlib import Path


def config_dir() -> Path:
    checkout = Path(__file__).resolve().parents[1] / "config"
    if (checkout / "metrics.toml").is_file():
        return checkout
    installed = Path(sys.prefix) / "share" / "itbsc" / "config"
    if (installed / "metrics.toml").is_file():
        return installed
    raise FileNotFoundError(
        "the shipped config/ folder was not found beside the package or in share/itbsc"
    )

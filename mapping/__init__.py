"""Mapping knows what records mean: field and value maps, metrics, the scorecard. Pure; no I/O but TOML."""

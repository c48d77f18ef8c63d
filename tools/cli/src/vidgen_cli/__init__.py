"""vidgen developer commands (`uv run vidgen --help`)."""

"""vidgen generator service."""

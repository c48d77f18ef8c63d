"""vidgen media service."""

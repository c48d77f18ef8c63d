"""vidgen gateway service."""

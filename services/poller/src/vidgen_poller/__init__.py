"""vidgen poller service."""

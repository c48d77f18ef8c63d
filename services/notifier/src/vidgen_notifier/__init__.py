"""vidgen notifier service: signed webhooks for generation events."""

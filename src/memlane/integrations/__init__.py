"""Optional adapters to other ecosystems, each behind an extra."""

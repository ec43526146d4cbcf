"""Command-line tools: ``postmap``, ``postalias``."""

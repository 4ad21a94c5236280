"""The web console and JSON API served by `clockd serve` (SPEC §7)."""

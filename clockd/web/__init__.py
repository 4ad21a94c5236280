"""HTTP side of `clockd serve`: the web console and JSON API (docs/console.md), and the push
receiver for terminals that call in (docs/protocol.md)."""

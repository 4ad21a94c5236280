"""HTTP side of `clockd serve`: the push receiver (and the web console)."""

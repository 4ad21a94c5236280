"""Everything that emulates a township: terminals, the synthetic town, the demo.

Nothing here is needed by a real deployment."""

"""The ways punches come in: polling terminals, USB export files. One way into the store."""

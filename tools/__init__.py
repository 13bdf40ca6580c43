"""Developer tools that live beside the package, not in it (run them from a checkout's root)."""

"""Training code for diffgraph's built-in demo model (not part of the installed package; see README.md)."""

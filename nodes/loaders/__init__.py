"""Node declarations."""

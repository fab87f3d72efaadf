"""SPAL."""

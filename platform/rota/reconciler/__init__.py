"""The level-triggered loop: desired (database) vs observed (Ray Serve) -> actions."""

"""Model utilities (the tiny generated model used by the demo and the tests)."""

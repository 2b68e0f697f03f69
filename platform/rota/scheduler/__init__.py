"""APScheduler wiring. A trigger only records a run and writes desired state."""

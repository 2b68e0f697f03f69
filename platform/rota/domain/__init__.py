"""Pure domain logic: models, statuses, schedule math, reconcile decisions. No I/O."""

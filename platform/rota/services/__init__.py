"""Use cases on top of the store: tasks, fires, events. They raise domain errors, never HTTP ones."""

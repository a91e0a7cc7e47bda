"""caretaker's run-time layer: scheduler, jobs, hooks, metrics, HTTP. Builds on `restore`."""

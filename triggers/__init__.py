"""Function triggers: thin adapters from the Functions host to `shared/`."""

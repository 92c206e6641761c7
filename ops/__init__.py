"""Tools for producers and operators (`python -m ops`): enqueue jobs, play Twilio, look up a
job's outcome, list and replay dead letters. They work on the local app and on a real
deployment alike; the local host and its services are `devhost/`."""

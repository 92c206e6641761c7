"""The app on this machine: a stand-in for the Functions host (`python -m devhost`), the
local services it runs against (Azurite, the local Twilio API double) and `run_local`
(`scripts/run-local`). The tools for producers and operators are `ops/`."""

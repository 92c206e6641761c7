"""Development tools: a local stand-in for the Functions host, and the local services."""

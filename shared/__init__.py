"""The app's logic. Framework-free: nothing here imports `azure.functions`."""

__version__ = "1.0.0"

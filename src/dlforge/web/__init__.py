"""The web platform: a FastAPI app over the same Python API the CLI uses."""

"""facsflow workflows: thin Ray entrypoints, one per stage (``python -m workflows.<stage>``)."""

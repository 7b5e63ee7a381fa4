"""How facsflow runs on real Ray clusters: job submission, token auth, manifests, serve config.

Importing this package has no side effects; each module is a command (``python -m cluster.<name>``)
or a small library for one.
"""

"""The feature store: its schema, and how one unit of frames becomes rows and rejects."""

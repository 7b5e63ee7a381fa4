"""The evaluation report: the JSON document, its tables and its plots."""

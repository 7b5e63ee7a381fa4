"""The synthetic AU data generator: real face photos warped by AU displacement fields, written in a real dataset layout."""

"""Checks that decide whether an example becomes a record, and the report of what was dropped."""

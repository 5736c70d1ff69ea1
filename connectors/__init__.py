"""Connectors page records out of ITSM sources; they never compute or store anything."""

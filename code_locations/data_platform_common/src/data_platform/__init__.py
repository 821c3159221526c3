"""Shared library of the data platform: what every code location builds on."""

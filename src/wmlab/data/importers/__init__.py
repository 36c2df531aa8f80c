"""Readers that turn other datasets into wmlab episodes (registered in :mod:`wmlab.data.formats`)."""

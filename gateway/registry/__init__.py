"""Adapter registry: the store on disk, versions and aliases, engine residency."""

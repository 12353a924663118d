"""Enrichment: profile look-ups with a cache, one request per user, and a time budget."""

"""Delivery: one sender per channel, rate limits, and the lanes that drain the outbox."""

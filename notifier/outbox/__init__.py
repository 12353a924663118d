"""The outbox: alerts written before any send, claimed with a lease, retried, or dead-lettered."""

"""The rules file: schema, loader with positions, and the pure matching engine."""

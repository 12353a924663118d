"""The daemon's stages, one module each: ingest, writer, pollers, state, reload, ops HTTP."""

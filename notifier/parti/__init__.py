"""The Parti backend: models, frame decoding, HTTP client, WebSocket stream, simulator."""

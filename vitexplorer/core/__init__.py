"""The headless core: models, attention capture, image decoding. Never imports Qt."""

"""Input and files: safe image decoding, the one folder scanner, the one atomic writer and
its staging, user paths."""

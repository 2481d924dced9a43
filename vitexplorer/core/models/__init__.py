"""Models: what a model is (a torch-free spec), loading it, its checkpoints and downloads,
the attention capture, the small ViT, and one adapter per library family."""

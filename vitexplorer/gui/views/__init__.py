"""pyqtgraph views of one image's analysis."""

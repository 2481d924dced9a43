"""The explorer's state without Qt: the open images, their analyses and what is selected."""

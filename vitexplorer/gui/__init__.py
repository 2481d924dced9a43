"""The Qt front end: thin widgets and workers over vitexplorer.core."""

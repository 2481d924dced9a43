"""Files shipped with vitexplorer: the sample image and its credits."""

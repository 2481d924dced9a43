"""Files shipped with vitexplorer: the sample photos, the demo model, and their credits."""

"""Resources of the feature store location; every instance here is discovered by its name."""

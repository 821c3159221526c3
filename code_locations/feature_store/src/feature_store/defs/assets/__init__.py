"""Assets and asset checks of the feature store location."""

"""Assets and asset checks of the feature store location, discovered from every module below."""

"""Jobs and schedules of the feature store location."""

"""Jobs and schedules of the feature store location, discovered from every module here."""

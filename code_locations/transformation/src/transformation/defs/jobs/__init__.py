"""Jobs of the transformation location."""

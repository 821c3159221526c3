"""Resources of the transformation location; every instance here is discovered by its name."""

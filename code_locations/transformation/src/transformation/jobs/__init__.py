"""Jobs of the transformation location, discovered from every module in this folder."""

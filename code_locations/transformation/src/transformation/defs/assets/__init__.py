"""Assets of the transformation location, loaded with everything else under defs/."""

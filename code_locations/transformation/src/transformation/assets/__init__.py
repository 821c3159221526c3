"""Assets of the transformation location, discovered recursively by data_platform.discovery."""

"""Everything the location defines; Dagster's defs-folder loader imports every module below."""

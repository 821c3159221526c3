"""Where gold exports go: a folder or an S3-compatible bucket named by EXPORT_URI."""

import dagster as dg

from transformation.object_store import EXPORT_URI, ExportStore

export_store = ExportStore(uri=dg.EnvVar(EXPORT_URI))

defs = dg.Definitions(resources={"export_store": export_store})

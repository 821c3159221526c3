import dagster as dg

from transformation.object_store import EXPORT_URI, ExportStore

export_store = ExportStore(uri=dg.EnvVar(EXPORT_URI))

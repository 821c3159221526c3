from data_platform import settings

from ingestion import LOCATION

postgres = settings.warehouse(LOCATION)

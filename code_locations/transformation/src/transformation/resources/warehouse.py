from data_platform import settings

from transformation import LOCATION

postgres = settings.warehouse(LOCATION)

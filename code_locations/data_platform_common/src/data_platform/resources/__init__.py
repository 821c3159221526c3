"""Resources every location uses, with factories that read configuration from the environment."""

from data_platform.resources.postgres import PostgresResource, copy_into
from data_platform.resources.redis import RedisResource

__all__ = ["PostgresResource", "RedisResource", "copy_into"]

"""Feast over feast_repo, its stores named by the environment."""

import dagster as dg

from feature_store.feast_resource import FeastResource

defs = dg.Definitions(resources={"feast": FeastResource()})

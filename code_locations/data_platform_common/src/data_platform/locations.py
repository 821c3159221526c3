"""The platform's code locations: one registry that the local stack, the charts and the tests read.

A team adding a location adds one entry here; everything that lists locations (workspace.yaml,
the Helm values, skaffold, the consistency tests) is checked against this list.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CodeLocation:
    name: str  # Dagster location name
    package: str  # Python package holding definitions.py
    port: int  # gRPC port of its code server on Kubernetes; the local stack's default
    team: str

    @property
    def port_variable(self) -> str:
        """Environment variable that moves its local code server (Kubernetes keeps ``port``)."""
        return f"PLATFORM_CODE_SERVER_PORT_{self.name.upper()}"

    @property
    def module(self) -> str:
        return f"{self.package}.definitions"

    @property
    def deployment(self) -> str:
        """Kubernetes name of its code server (Deployment and Service): DNS-1123, no underscores."""
        return self.name.replace("_", "-")

    @property
    def image(self) -> str:
        return f"data-platform/{self.deployment}"


INGESTION = CodeLocation("ingestion", "ingestion", 4000, "ingestion-team")
TRANSFORMATION = CodeLocation("transformation", "transformation", 4001, "analytics-engineering")
FEATURE_STORE = CodeLocation("feature_store", "feature_store", 4002, "ml-platform")

LOCATIONS: tuple[CodeLocation, ...] = (INGESTION, TRANSFORMATION, FEATURE_STORE)


def by_name(name: str) -> CodeLocation:
    for location in LOCATIONS:
        if location.name == name:
            return location
    known = ", ".join(loc.name for loc in LOCATIONS)
    raise KeyError(f"unknown code location {name!r}; known locations: {known}")

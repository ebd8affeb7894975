"""Compute ``acceleratorTypes``: where a GPU type exists, and how many fit one machine.

One ``aggregatedList`` filtered on the type's name answers for every zone at once, so a refusal can
name the regions that do offer it. Read-only; honours the connection's ``api_endpoint`` like every
hook built on ``EndpointAwareGoogleHook``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from gke_inference.hooks._base import EndpointAwareGoogleHook, compute_v1_on_demand
from gke_inference.hooks._retry import DEFAULT_RETRY

compute_v1 = compute_v1_on_demand()


@dataclass(frozen=True)
class AcceleratorAvailability:
    """Where one accelerator type exists, as Compute lists it."""

    accelerator: str
    region: str
    # zone -> maximumCardsPerInstance, for every zone of every region that offers the type.
    max_cards_by_zone: dict[str, int]

    @property
    def zones_in_region(self) -> list[str]:
        return sorted(zone for zone in self.max_cards_by_zone if region_of_zone(zone) == self.region)

    @property
    def regions_elsewhere(self) -> list[str]:
        return sorted({region_of_zone(zone) for zone in self.max_cards_by_zone} - {self.region})

    @property
    def max_cards_per_instance(self) -> int | None:
        """The most cards one machine of the region takes (None when the region has none)."""
        counts = [self.max_cards_by_zone[zone] for zone in self.zones_in_region]
        return max(counts) if counts else None


def region_of_zone(zone: str) -> str:
    return zone.rpartition("-")[0]


class AcceleratorTypesHook(EndpointAwareGoogleHook):
    """Read Compute ``acceleratorTypes``."""

    @cached_property
    def accelerator_types(self) -> compute_v1.AcceleratorTypesClient:
        return self.named_client(compute_v1.AcceleratorTypesClient(**self.client_kwargs()))

    def availability(
        self, accelerator: str, region: str, project_id: str | None = None
    ) -> AcceleratorAvailability:
        """The zones offering ``accelerator`` (in ``region`` and elsewhere) and their card limits."""
        pager = self.accelerator_types.aggregated_list(
            request=compute_v1.AggregatedListAcceleratorTypesRequest(
                project=self.resolve_project_id(project_id), filter=f'name = "{accelerator}"'
            ),
            retry=DEFAULT_RETRY,
            timeout=self.request_timeout,
        )
        max_cards_by_zone = {
            scope.removeprefix("zones/"): accelerator_type.maximum_cards_per_instance
            for scope, scoped in pager
            for accelerator_type in scoped.accelerator_types
            if accelerator_type.name == accelerator
        }
        return AcceleratorAvailability(accelerator, region, max_cards_by_zone)

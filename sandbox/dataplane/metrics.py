"""Prometheus text exposition: just enough to write vLLM's metrics and to read them back in the picker."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# vLLM's buckets for vllm:time_to_first_token_seconds.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


@dataclass
class Histogram:
    buckets: Sequence[float]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    observations: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        self.total += value
        self.observations += 1
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    body = ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items())
    return "{" + body + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Exposition:
    """Builds one /metrics page."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._families: set[str] = set()

    def gauge(self, name: str, help_text: str, value: float, labels: dict[str, str]) -> None:
        self._family(name, "gauge", help_text)
        self._lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def counter(self, name: str, help_text: str, value: float, labels: dict[str, str]) -> None:
        self._family(name, "counter", help_text)
        self._lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def histogram(self, name: str, help_text: str, histogram: Histogram, labels: dict[str, str]) -> None:
        self._family(name, "histogram", help_text)
        for bound, count in zip(histogram.buckets, histogram.counts, strict=True):
            bucket_labels = {**labels, "le": _number(bound)}
            self._lines.append(f"{name}_bucket{_labels(bucket_labels)} {count}")
        self._lines.append(f"{name}_bucket{_labels({**labels, 'le': '+Inf'})} {histogram.observations}")
        self._lines.append(f"{name}_sum{_labels(labels)} {_number(histogram.total)}")
        self._lines.append(f"{name}_count{_labels(labels)} {histogram.observations}")

    def declare(self, name: str, kind: str, help_text: str) -> None:
        """The HELP and TYPE lines alone: a labelled family that has no series yet."""
        self._family(name, kind, help_text)

    def _family(self, name: str, kind: str, help_text: str) -> None:
        if name in self._families:
            return
        self._families.add(name)
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


def parse_samples(text: str) -> Iterable[Sample]:
    """Yield the samples of a Prometheus text page; comment and malformed lines are skipped."""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            continue
        try:
            value = float(match["value"])
        except ValueError:
            continue
        labels = {key: _unescape(value) for key, value in _LABEL.findall(match["labels"] or "")}
        yield Sample(match["name"], labels, value)


def gauge_value(text: str, name: str) -> float | None:
    """The value of the first sample of a gauge, or None when the page lacks it."""
    for sample in parse_samples(text):
        if sample.name == name:
            return sample.value
    return None


LORA_INFO_METRIC = "vllm:lora_requests_info"  # --lora-info-metric (EPP v1.0.1 default)


@dataclass(frozen=True)
class LoraInfo:
    running: tuple[str, ...]
    waiting: tuple[str, ...]
    max_loras: int | None


def latest_lora_info(text: str) -> LoraInfo | None:
    """The EPP's reading of vllm:lora_requests_info (pkg/epp/backend/metrics/metrics.go,
    getLatestLoraMetric, v1.0.1): among the series naming a running or waiting adapter, the one with
    the largest value (a timestamp); None when there is none, and the EPP then keeps what it had."""
    latest: Sample | None = None
    for sample in parse_samples(text):
        if sample.name != LORA_INFO_METRIC:
            continue
        if not sample.labels.get("running_lora_adapters") and not sample.labels.get("waiting_lora_adapters"):
            continue
        if latest is None or sample.value > latest.value:
            latest = sample
    if latest is None:
        return None
    max_loras = latest.labels.get("max_lora", "")
    return LoraInfo(
        running=_adapters(latest.labels.get("running_lora_adapters", "")),
        waiting=_adapters(latest.labels.get("waiting_lora_adapters", "")),
        max_loras=int(max_loras) if max_loras.isdigit() else None,
    )


def _adapters(csv: str) -> tuple[str, ...]:
    return tuple(csv.split(",")) if csv else ()

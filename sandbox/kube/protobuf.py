"""Decode the Kubernetes protobuf encoding for the few built-in kinds kubectl creates with it.

The encoding (k8s.io/apimachinery pkg/runtime/serializer/protobuf/protobuf.go): the 4-byte magic
`k8s\\x00`, then a `runtime.Unknown` message whose `typeMeta` names apiVersion and kind and whose
`raw` holds the object's own message. Field numbers below are copied from the generated.proto files
of k8s.io/apimachinery v0.32.4 (pkg/runtime/generated.proto, pkg/apis/meta/v1/generated.proto) and
k8s.io/api v0.32.4 (core/v1/generated.proto). The result is the object's JSON form: empty strings,
zero numbers and zero times are left out (their Go JSON tags say omitempty), []byte becomes base64.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from sandbox.kube.status import bad_request

MAGIC = b"k8s\x00"

STRING, BYTES, INT, BOOL, TIME = "string", "bytes", "int", "bool", "time"
# A field: (JSON name, kind, repeated). A kind is one of the scalars above, a message name, or
# ("map", key kind, value kind).
Field = tuple[str, Any, bool]


def _one(name: str, kind: Any) -> Field:
    return (name, kind, False)


def _many(name: str, kind: Any) -> Field:
    return (name, kind, True)


MESSAGES: dict[str, dict[int, Field]] = {
    # apimachinery pkg/runtime/generated.proto
    "runtime.Unknown": {
        1: _one("typeMeta", "runtime.TypeMeta"),
        2: _one("raw", "raw"),
        3: _one("contentEncoding", STRING),
        4: _one("contentType", STRING),
    },
    "runtime.TypeMeta": {1: _one("apiVersion", STRING), 2: _one("kind", STRING)},
    # apimachinery pkg/apis/meta/v1/generated.proto (managedFields, 17, is server-written: not here)
    "meta.ObjectMeta": {
        1: _one("name", STRING),
        2: _one("generateName", STRING),
        3: _one("namespace", STRING),
        4: _one("selfLink", STRING),
        5: _one("uid", STRING),
        6: _one("resourceVersion", STRING),
        7: _one("generation", INT),
        8: _one("creationTimestamp", TIME),
        9: _one("deletionTimestamp", TIME),
        10: _one("deletionGracePeriodSeconds", INT),
        11: _one("labels", ("map", STRING, STRING)),
        12: _one("annotations", ("map", STRING, STRING)),
        13: _many("ownerReferences", "meta.OwnerReference"),
        14: _many("finalizers", STRING),
    },
    "meta.OwnerReference": {
        5: _one("apiVersion", STRING),
        1: _one("kind", STRING),
        3: _one("name", STRING),
        4: _one("uid", STRING),
        6: _one("controller", BOOL),
        7: _one("blockOwnerDeletion", BOOL),
    },
    # api core/v1/generated.proto
    "core.Namespace": {
        1: _one("metadata", "meta.ObjectMeta"),
        2: _one("spec", "core.NamespaceSpec"),
        3: _one("status", "core.NamespaceStatus"),
    },
    "core.NamespaceSpec": {1: _many("finalizers", STRING)},
    "core.NamespaceStatus": {1: _one("phase", STRING)},
    "core.Secret": {
        1: _one("metadata", "meta.ObjectMeta"),
        5: _one("immutable", BOOL),
        2: _one("data", ("map", STRING, BYTES)),
        4: _one("stringData", ("map", STRING, STRING)),
        3: _one("type", STRING),
    },
    "core.ServiceAccount": {
        1: _one("metadata", "meta.ObjectMeta"),
        2: _many("secrets", "core.ObjectReference"),
        3: _many("imagePullSecrets", "core.LocalObjectReference"),
        4: _one("automountServiceAccountToken", BOOL),
    },
    "core.ObjectReference": {
        1: _one("kind", STRING),
        2: _one("namespace", STRING),
        3: _one("name", STRING),
        4: _one("uid", STRING),
        5: _one("apiVersion", STRING),
        6: _one("resourceVersion", STRING),
        7: _one("fieldPath", STRING),
    },
    "core.LocalObjectReference": {1: _one("name", STRING)},
    "core.ConfigMap": {
        1: _one("metadata", "meta.ObjectMeta"),
        4: _one("immutable", BOOL),
        2: _one("data", ("map", STRING, STRING)),
        3: _one("binaryData", ("map", STRING, BYTES)),
    },
}

# The kinds the twin decodes: those `kubectl create namespace|secret|configmap|serviceaccount` send.
# (`kubectl create deployment|job|...` send protobuf too: the twin answers them 415, see content.py.)
KINDS = {
    ("v1", "Namespace"): "core.Namespace",
    ("v1", "Secret"): "core.Secret",
    ("v1", "ConfigMap"): "core.ConfigMap",
    ("v1", "ServiceAccount"): "core.ServiceAccount",
}


def can_decode(api_version: str, kind: str) -> bool:
    return (api_version, kind) in KINDS


def decode_object(raw: bytes, api_version: str, kind: str) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object sent to the URL of `api_version`/`kind`."""
    if not raw.startswith(MAGIC):
        raise bad_request("the protobuf body does not start with the Kubernetes magic prefix k8s\\x00")
    envelope = _message(raw[len(MAGIC) :], "runtime.Unknown")
    if envelope.get("contentEncoding"):
        raise bad_request(f"unsupported protobuf content encoding {envelope['contentEncoding']!r}")
    type_meta = envelope.get("typeMeta", {})
    sent = (type_meta.get("apiVersion", ""), type_meta.get("kind", ""))
    message = KINDS.get(sent) if sent == (api_version, kind) else None
    if message is None:
        raise bad_request(
            f"the protobuf body holds {sent[0]}, Kind={sent[1]}, not the {api_version}, Kind={kind} "
            "the request was sent to"
        )
    obj = _message(envelope.get("raw", b""), message)
    return {"apiVersion": sent[0], "kind": sent[1], **obj}


def _message(data: bytes, name: str) -> dict[str, Any]:
    schema = MESSAGES[name]
    result: dict[str, Any] = {}
    for number, value in _fields(data, name):
        field = schema.get(number)
        if field is None:
            raise bad_request(f"the twin cannot decode field {number} of protobuf message {name}; send JSON")
        json_name, kind, repeated = field
        decoded = _value(value, kind, f"{name}.{json_name}")
        if isinstance(kind, tuple):  # a map entry
            result.setdefault(json_name, {}).update([decoded])
        elif repeated:
            result.setdefault(json_name, []).append(decoded)
        else:
            result[json_name] = decoded
    return {key: value for key, value in result.items() if value not in ("", 0, None) or value is False}


def _value(value: int | bytes, kind: Any, where: str) -> Any:
    if kind in (INT, BOOL):
        if not isinstance(value, int):
            raise bad_request(f"protobuf field {where} is not a varint")
        return bool(value) if kind == BOOL else _signed(value)
    if not isinstance(value, bytes):
        raise bad_request(f"protobuf field {where} is not length-delimited")
    if kind == STRING:
        return value.decode("utf-8")
    if kind == BYTES:
        return base64.b64encode(value).decode()
    if kind == "raw":
        return value
    if kind == TIME:
        return _time(value)
    if isinstance(kind, tuple):
        entry = dict(_fields(value, where))
        key = _value(entry.get(1, b""), kind[1], where)
        return key, _value(entry.get(2, b""), kind[2], where)
    return _message(value, kind)


def _time(data: bytes) -> str | None:
    """meta/v1 Time {seconds, nanos}: RFC 3339 at second precision, as metav1.Time marshals; zero is null."""
    parts = dict(_fields(data, "meta.Time"))
    seconds = _signed(parts.get(1, 0)) if isinstance(parts.get(1, 0), int) else 0
    if not seconds and not parts.get(2):
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _signed(value: int) -> int:
    """An int64 varint: negative numbers arrive as their 64-bit two's complement."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(data: bytes, where: str) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message: an int for varints, bytes otherwise."""
    fields = []
    position = 0
    try:
        while position < len(data):
            key, position = _varint(data, position)
            number, wire_type = key >> 3, key & 7
            if wire_type == 0:
                value, position = _varint(data, position)
            elif wire_type == 2:
                length, position = _varint(data, position)
                if position + length > len(data):
                    raise IndexError
                value, position = data[position : position + length], position + length
            elif wire_type in (1, 5):
                width = 8 if wire_type == 1 else 4
                value, position = data[position : position + width], position + width
            else:
                raise bad_request(f"protobuf message {where} uses unsupported wire type {wire_type}")
            fields.append((number, value))
    except IndexError:
        raise bad_request(f"the protobuf message {where} is truncated") from None
    return fields


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7

"""Content-type negotiation for request bodies and answers, as the API server does it.

kubectl's typed clients (`kubectl create namespace|secret|configmap`) send built-in objects as
`application/vnd.kubernetes.protobuf` with `Accept: application/vnd.kubernetes.protobuf,
application/json` (client-go rest/request.go `UseProtobufAsDefault`). client-go falls back to JSON
after an HTTP 415 only for CBOR, never for protobuf: "all generated clients accessing built-in kube
resources are forced to protobuf, so those will not degrade to JSON" (client-go v0.32.4
rest/client.go `requestClientContentConfigProvider.UnsupportedMediaType`). So the twin decodes the
protobuf those commands send (sandbox/kube/protobuf.py) and answers in JSON, which their Accept
list allows.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from sandbox.kube import protobuf
from sandbox.kube.resources import ResourceType
from sandbox.kube.status import bad_request, not_acceptable, unsupported_media_type

JSON = "application/json"
YAML = "application/yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
# What a built-in resource's serializer lists (k8s.io/apiserver negotiation.MediaTypesForSerializer
# over the legacy scheme's codecs; CBOR only behind a feature gate that is off in 1.32-1.34).
BODY_MEDIA_TYPES = (JSON, YAML, PROTOBUF)
# The PATCH content types (k8s.io/apiserver v0.32.4 pkg/endpoints/installer.go `supportedTypes`;
# custom resources have no strategic merge patch: apiextensions-apiserver customresource_handler.go).
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
BUILTIN_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)
CUSTOM_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH)
# What the twin can write: JSON only (Table is JSON too). Real servers also write YAML and protobuf.
ANSWER_MEDIA_TYPES = (JSON,)


def media_type(header: str) -> str:
    """The bare media type of a Content-Type header ("; charset=..." and other parameters removed)."""
    return header.split(";")[0].strip().lower()


def decode_body(raw: bytes, content_type_header: str, resource_type: ResourceType) -> Any:
    """A create/update body decoded by its Content-Type; no Content-Type means JSON.

    k8s.io/apiserver v0.32.4 pkg/endpoints/handlers/negotiation/negotiate.go
    `NegotiateInputSerializerForMediaType`: an empty Content-Type takes the first supported type
    (JSON); an unsupported one is a 415 listing the supported ones.
    """
    kind = media_type(content_type_header) or JSON
    if kind == JSON:
        return parse_json(raw)
    if kind == YAML:
        return parse_yaml(raw)
    decodes_protobuf = protobuf.can_decode(resource_type.api_version, resource_type.kind)
    if kind == PROTOBUF and decodes_protobuf:
        return protobuf.decode_object(raw, resource_type.api_version, resource_type.kind)
    # A real server also decodes protobuf for every other built-in kind; the twin cannot, and says
    # so by leaving protobuf out of the list (kubectl only sends it for the kinds above).
    raise unsupported_media_type(BODY_MEDIA_TYPES if decodes_protobuf else (JSON, YAML))


def require_patch_type(content_type_header: str, resource_type: ResourceType) -> str:
    """The PATCH's media type, or the API server's 415 (patch.go checks it before anything else)."""
    kind = media_type(content_type_header)
    accepted = CUSTOM_PATCH_TYPES if resource_type.from_crd else BUILTIN_PATCH_TYPES
    if kind not in accepted:
        raise unsupported_media_type(accepted)
    return kind


def require_json_answer(accept: str) -> None:
    """Refuse (406) an Accept list that allows nothing the twin writes.

    k8s.io/apiserver negotiation.NegotiateOutputMediaType answers 406 "only the following media
    types are accepted: ..." when no Accept entry matches; an empty Accept, `*/*` and
    `application/*` take the first supported type. kubectl always lists JSON (alone, after
    protobuf, or as the Table fallback), so this only refuses clients that want protobuf or YAML
    alone, which the twin cannot write.
    """
    if not accept.strip():
        return
    for entry in accept.split(","):
        kind = media_type(entry)
        if kind in (JSON, "*/*", "application/*"):
            return
    raise not_acceptable(ANSWER_MEDIA_TYPES)


def parse_json(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise bad_request(f"the request body is not valid JSON: {error}") from None


def parse_yaml(raw: bytes | str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as error:
        raise bad_request(f"the request body is not valid YAML: {error}") from None

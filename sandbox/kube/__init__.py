"""A Kubernetes API server twin, one per sandbox GKE cluster, with simulated controllers.

`cluster.KubeCluster` ties the parts together: `store.ObjectStore` (objects, resourceVersions,
the change feed), `server.KubeApiServer` (HTTPS routes, auth, verbs), `discovery` (legacy and
aggregated discovery, minimal OpenAPI v3), `apply` and `patches` (server-side apply and the
three classic PATCH bodies), `watch`, `tables` (kubectl's columns), `admission` (validation and
defaults), `builtin` (builtin kinds and the CRDs GKE preinstalls) and `controllers/*`.

Known differences from a real cluster: deletes are immediate unless metadata.finalizers are
set (no graceful pod termination, every delete cascades to owned objects whatever the propagation policy); a CRD
serves each version as its own store (no conversion); OpenAPI has no schemas (`kubectl explain`
fails); list pagination (`limit`/`continue`) is ignored; Deployments surge the whole new
ReplicaSet at once.
"""

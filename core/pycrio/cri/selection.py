"""What the CRI's list filters have in common for pods, containers and their stats."""

from __future__ import annotations

from typing import Any


def selected(f: Any, *, id: str, labels: dict[str, str], state: int = -1, pod: str = "") -> bool:
    """Whether an object passes a CRI filter (any of the pod, container and stats filters).

    Ids match by prefix, as crictl and the kubelet use them; every label of
    the selector must match; state and pod apply only to filters that have them.
    """
    if f is None:
        return True
    if f.id and not id.startswith(f.id):
        return False
    if "state" in f.DESCRIPTOR.fields_by_name and f.HasField("state") and f.state.state != state:
        return False
    pod_filter = getattr(f, "pod_sandbox_id", "")
    if pod_filter and not pod.startswith(pod_filter):
        return False
    return all(labels.get(k) == v for k, v in f.label_selector.items())

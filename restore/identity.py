"""Who this process is to other writers of a repository: its pod, as stably as we can name it.

Kubernetes gives each container of a pod the pod's name as `HOSTNAME`, and the downward
API can add the name and the UID explicitly (`CARETAKER_POD_NAME`, `CARETAKER_POD_UID`;
the chart and `caretaker inject` set both). The UID tells two incarnations of one name
apart: a StatefulSet's `web-0` recreated after a rolling update is a new pod, while the
init container and the sidecar of one pod, or a sidecar container the kubelet restarted,
are the same one. Outside Kubernetes the host name stands in for the pod.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Mapping

POD_NAME_VARIABLE = "CARETAKER_POD_NAME"
POD_UID_VARIABLE = "CARETAKER_POD_UID"
_SHOWN_UID = 8


@dataclasses.dataclass(frozen=True)
class Identity:
    """A pod (or host) name, and the pod's UID when the downward API provides it."""

    name: str
    uid: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Identity:
        """The pod name and UID from the downward API, else HOSTNAME, else the host name."""
        return cls(name=host_name(environ), uid=environ.get(POD_UID_VARIABLE, ""))

    def same_pod(self, other: Identity) -> bool:
        """Whether `other` names this pod. Without a UID on either side the names decide."""
        if self.name != other.name:
            return False
        return not (self.uid and other.uid) or self.uid == other.uid

    def __str__(self) -> str:
        return f"{self.name} (uid {self.uid[:_SHOWN_UID]})" if self.uid else self.name


def host_name(environ: Mapping[str, str]) -> str:
    """The pod name (HOSTNAME in Kubernetes), else the system's host name."""
    return environ.get(POD_NAME_VARIABLE) or environ.get("HOSTNAME") or socket.gethostname()

"""The node's status -> ``diagnostic_msgs/DiagnosticArray`` (one ``DiagnosticStatus``, every number as a key/value)."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from .header_conversions import header_msg

HARDWARE_ID = "semantic_recon_ros"


def _flatten(values: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Nested status dict -> sorted ``("a.b", "value")`` pairs (None as "-")."""
    pairs = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            pairs += _flatten(value, f"{name}.")
        else:
            pairs.append((name, "-" if value is None else str(value)))
    return sorted(pairs)


def status_level(status: dict) -> tuple[bytes, str]:
    """(level, message): ERROR when a requested completion network is not in use or completion runs failed,
    WARN when frames were dropped, else OK."""
    completion = status["completion"]
    dropped = sum(status["dropped"].values())
    if completion.get("error") or completion.get("errors"):
        return DiagnosticStatus.ERROR, f"completion: {completion.get('error') or str(completion['errors']) + ' failed runs'}"
    if dropped:
        return DiagnosticStatus.WARN, f"{dropped} of {status['frames_in']} frames dropped"
    return DiagnosticStatus.OK, f"{status['integrated']} frames integrated"


def status_diagnostics(status: dict, node_name: str, stamp_ns: int) -> DiagnosticArray:
    """The ``~/status`` dict of the mapping node as a DiagnosticArray named after the node."""
    level, message = status_level(status)
    entry = DiagnosticStatus(level=level, name=f"{node_name.lstrip('/')}: mapping", message=message,
                             hardware_id=HARDWARE_ID,
                             values=[KeyValue(key=k, value=v) for k, v in _flatten(status)])
    return DiagnosticArray(header=header_msg(stamp_ns, ""), status=[entry])

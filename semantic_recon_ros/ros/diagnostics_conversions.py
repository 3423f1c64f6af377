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
    WARN when frames were dropped or input messages were stamped too far from the node clock (stale / future:
    dropped before they could form frames), else OK."""
    completion = status["completion"]
    dropped = sum(status["dropped"].values())
    off_clock = sum(status.get("dropped_messages", {}).get(reason, 0) for reason in ("stale", "future"))
    if completion.get("error") or completion.get("errors"):
        return DiagnosticStatus.ERROR, f"completion: {completion.get('error') or str(completion['errors']) + ' failed runs'}"
    if dropped or off_clock:
        problems = [f"{dropped} of {status['frames_in']} frames dropped"] if dropped else []
        problems += [f"{off_clock} input messages stamped too far from the node clock"] if off_clock else []
        return DiagnosticStatus.WARN, "; ".join(problems)
    return DiagnosticStatus.OK, f"{status['integrated']} frames integrated"


def status_diagnostics(status: dict, node_name: str, stamp_ns: int) -> DiagnosticArray:
    """The ``~/status`` dict of the mapping node as a DiagnosticArray named after the node."""
    level, message = status_level(status)
    entry = DiagnosticStatus(level=level, name=f"{node_name.lstrip('/')}: mapping", message=message,
                             hardware_id=HARDWARE_ID,
                             values=[KeyValue(key=k, value=v) for k, v in _flatten(status)])
    return DiagnosticArray(header=header_msg(stamp_ns, ""), status=[entry])

"""ROS 1 bag files (``.bag``, format 2.0) read as ROS 2 bags: topics under ROS 2 message types, messages as CDR.

:class:`Ros1Bag` has the ``rosbags`` ROS 2 Reader's reading interface, so the readers of ROS 2 bags
(:class:`~.rosbag_sequence.RosbagSequence`, the bag player) read it unchanged. A topic is kept when its
message type, under its ROS 2 name (``tf/tfMessage`` is ``tf2_msgs/TFMessage``), exists in ROS 2 with the
layout of the definition the bag stores: the same fields in the same order with the same types (names may
differ, as CameraInfo's ``K`` / ``k``), the ROS 1 header's ``seq`` being the one field ROS 2 drops. That holds
for ``sensor_msgs`` Image, CompressedImage and CameraInfo, ``tf2_msgs/TFMessage`` and most standard messages;
their bytes are converted without deserializing (``rosbags``' ``ros1_to_cdr``). Other topics are left out and
listed in :attr:`Ros1Bag.unreadable`. Latched topics (``/tf_static``) are offered transient-local, as ROS 2
static publishers offer them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rosbags.interfaces import (
    Connection,
    ConnectionExtRosbag2,
    Nodetype,
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag1 import Reader
from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore

from .bag_topics import TF_MESSAGE_TYPE, TYPESTORE

if TYPE_CHECKING:
    from rosbags.typesys.store import Typestore

ROS1_BAG_SUFFIX = ".bag"
CDR = "cdr"
HEADER_TYPE = "std_msgs/msg/Header"
# ROS 1 message types that ROS 2 calls otherwise (rosbags' reader already names ROS 1 types ``pkg/msg/Type``)
ROS2_TYPE_NAMES = {"tf/msg/tfMessage": TF_MESSAGE_TYPE}
_LATCHED = Qos(history=QosHistory.KEEP_LAST, depth=1, reliability=QosReliability.RELIABLE,
               durability=QosDurability.TRANSIENT_LOCAL, deadline=QosTime(sec=0, nsec=0),
               lifespan=QosTime(sec=0, nsec=0), liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=QosTime(sec=0, nsec=0), avoid_ros_namespace_conventions=False)


def _same_field(bag_types: Typestore, bag_field: tuple, ros2_field: tuple) -> bool:
    """Whether a field of the bag's definition (a rosbags field description) is serialized as the ROS 2 one."""
    kind, args = bag_field
    if kind != ros2_field[0]:
        return False
    if kind == Nodetype.BASE:
        return args[0] == ros2_field[1][0]  # string bounds aside
    if kind == Nodetype.NAME:
        return same_layout(bag_types, args, ros2_field[1])
    (element, length), (ros2_element, ros2_length) = args, ros2_field[1]
    fixed_size = kind == Nodetype.ARRAY
    return (not fixed_size or length == ros2_length) and _same_field(bag_types, element, ros2_element)


def same_layout(bag_types: Typestore, bag_type: str, ros2_type: str) -> bool:
    """Whether messages of ``bag_type`` as ``bag_types`` defines it (ROS 1) convert byte for byte into the ROS 2
    ``ros2_type`` of :data:`TYPESTORE`: the same field types in the same order; headers always do (ROS 1's
    ``seq`` is dropped)."""
    if bag_type == HEADER_TYPE and ros2_type == HEADER_TYPE:
        return True
    if bag_type not in bag_types.fielddefs or ros2_type not in TYPESTORE.fielddefs:
        return False
    fields = [field for _, field in bag_types.fielddefs[bag_type][1]]
    ros2_fields = [field for _, field in TYPESTORE.fielddefs[ros2_type][1]]
    return len(fields) == len(ros2_fields) and all(
        _same_field(bag_types, field, ros2_field) for field, ros2_field in zip(fields, ros2_fields))


def _bag_definitions(connection: Connection) -> Typestore:
    """The message types as the bag's connection defines them (its stored message definition)."""
    types = get_typestore(Stores.EMPTY)
    types.register(get_types_from_msg(connection.msgdef.data, connection.msgtype))
    return types


class Ros1Bag:
    """A ROS 1 bag file read as a ROS 2 bag (see the module docstring); open on construction, :meth:`close` it.

    Args:
        path: the ``.bag`` file.

    Attributes:
        connections: the readable topics' connections, with ROS 2 message types and CDR serialization.
        unreadable: {topic: ROS 1 message type} of the topics left out.

    Raises rosbags' ``ReaderError`` when the file is no readable ROS 1 bag (e.g. not indexed).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._reader = Reader(self.path)
        self._reader.open()
        self._closed = False
        self.connections: list[Connection] = []
        self.unreadable: dict[str, str] = {}
        self._bag_connections: dict[int, Connection] = {}
        for connection in self._reader.connections:
            msgtype = ROS2_TYPE_NAMES.get(connection.msgtype, connection.msgtype)
            try:
                readable = same_layout(_bag_definitions(connection), connection.msgtype, msgtype)
            except TypesysError:  # a definition rosbags cannot parse
                readable = False
            if not readable:
                self.unreadable[connection.topic] = connection.msgtype
                continue
            ext = ConnectionExtRosbag2(serialization_format=CDR,
                                       offered_qos_profiles=[_LATCHED] if connection.ext.latching else [])
            self.connections.append(Connection(id=connection.id, topic=connection.topic, msgtype=msgtype, msgdef=None,
                                               digest="", msgcount=connection.msgcount, ext=ext, owner=self))
            self._bag_connections[connection.id] = connection

    @property
    def message_count(self) -> int:
        """Number of messages on the readable topics."""
        return sum(connection.msgcount for connection in self.connections)

    @property
    def duration(self) -> int:
        """Time between the bag's first and last message, ns."""
        return self._reader.duration

    def unreadable_text(self) -> str:
        """The topics left out, for messages to the user."""
        topics = ", ".join(f"{topic} ({msgtype})" for topic, msgtype in sorted(self.unreadable.items()))
        return f"{topics} (no ROS 2 message type of the same layout)"

    def messages(self, connections: Collection[Connection] = (), start: int | None = None,
                 stop: int | None = None) -> Iterator[tuple[Connection, int, bytes]]:
        """(connection, log time ns, CDR message) of ``connections`` (all readable ones when empty) in time
        order, log time in [start, stop)."""
        wanted = {connection.id: connection for connection in (connections or self.connections)}
        bag_connections = [self._bag_connections[connection_id] for connection_id in wanted]
        if not bag_connections:
            return
        for bag_connection, log_time, raw in self._reader.messages(connections=bag_connections, start=start, stop=stop):
            connection = wanted[bag_connection.id]
            yield connection, log_time, TYPESTORE.ros1_to_cdr(raw, connection.msgtype)

    def close(self) -> None:
        """Close the file (idempotent)."""
        if not self._closed:
            self._reader.close()
            self._closed = True

"""Opening bags for reading: ROS 2 bag folders, bare storage files, ROS 1 bag files, mcap files damaged at the end.

:func:`open_bag` accepts what a user may point at: a bag folder with ``metadata.yaml`` (as ``ros2 bag
record`` leaves it), a bare ``.mcap`` or ``.db3`` file (``rosbags`` opens those without metadata), a
folder holding exactly one such file but no ``metadata.yaml`` (a recording that was killed before
writing it), or a ROS 1 ``.bag`` file, read as a ROS 2 bag (:class:`~.ros1_bags.Ros1Bag`). An ``.mcap``
file that ``rosbags`` cannot open because it is cut off or damaged (no footer, a truncated record) is read
record by record with the ``mcap`` stream reader up to the damage: :class:`RecoveredMcap` keeps those
messages in memory and says what it recovered in ``damage``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

from mcap.exceptions import McapError
from mcap.records import Channel, Message, Schema
from mcap.stream_reader import StreamReader
from rosbags.interfaces import Connection, ConnectionExtRosbag2
from rosbags.rosbag1 import ReaderError as Ros1ReaderError
from rosbags.rosbag2 import Reader, ReaderError

from .ros1_bags import ROS1_BAG_SUFFIX, Ros1Bag

BAG_FILE_SUFFIXES = (".mcap", ".db3")
CDR = "cdr"


class RecoveredMcap:
    """The messages of an mcap file before the point where it is damaged, with the ``rosbags`` Reader's
    reading interface (``connections``, ``messages``, ``close``). Messages are held in memory.

    Args:
        path: the ``.mcap`` file.
        reason: why the normal reader failed (shown in :attr:`damage`).
    """

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        schemas: dict[int, Schema] = {}
        channels: dict[int, Channel] = {}
        self._messages: list[Message] = []
        problem = "it ends without the mcap footer"
        with path.open("rb") as stream:
            try:
                for record in StreamReader(stream, skip_magic=False).records:
                    if isinstance(record, Schema):
                        schemas[record.id] = record
                    elif isinstance(record, Channel):
                        channels[record.id] = record
                    elif isinstance(record, Message) and record.channel_id in channels:
                        self._messages.append(record)
            except (McapError, ValueError, EOFError, OSError) as error:  # stream readers raise all of these
                problem = f"{type(error).__name__} {error}".strip() if str(error) else type(error).__name__
        counts: dict[int, int] = {}
        for message in self._messages:
            counts[message.channel_id] = counts.get(message.channel_id, 0) + 1
        ext = ConnectionExtRosbag2(serialization_format=CDR, offered_qos_profiles=[])
        self.connections = [
            Connection(id=channel.id, topic=channel.topic, msgtype=schemas[channel.schema_id].name
                       if channel.schema_id in schemas else "", msgdef=None, digest="",
                       msgcount=counts.get(channel.id, 0), ext=ext, owner=self)
            for channel in channels.values() if channel.message_encoding == CDR
        ]
        self.damage = (f"bag file {path} is damaged ({reason}; {problem}): read the {len(self._messages)} messages "
                       "before the damage")

    def messages(self, connections: Collection[Connection] = (), start: int | None = None,
                 stop: int | None = None) -> Iterator[tuple[Connection, int, bytes]]:
        """(connection, log time ns, serialized message) of ``connections`` (all when empty) in file order,
        log time in [start, stop)."""
        wanted = {c.id: c for c in (connections or self.connections)}
        for message in self._messages:
            connection = wanted.get(message.channel_id)
            if connection is None or (start is not None and message.log_time < start) or (
                    stop is not None and message.log_time >= stop):
                continue
            yield connection, message.log_time, message.data

    def close(self) -> None:
        self._messages = []


def bag_storage_path(path: str | Path) -> Path:
    """What ``rosbags`` should open for ``path``: a bag folder with metadata.yaml, a storage file or a ROS 1 bag
    file as it is; a folder without metadata.yaml -> its one ``.mcap`` / ``.db3`` file.

    Raises FileNotFoundError when ``path`` does not exist, ValueError when it is no bag.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"bag not found: {path}")
    if path.is_file():
        if path.suffix not in (*BAG_FILE_SUFFIXES, ROS1_BAG_SUFFIX):
            raise ValueError(f"{path} is not a bag file (.mcap or .db3 of ROS 2, .bag of ROS 1)")
        return path
    if (path / "metadata.yaml").is_file():
        return path
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in BAG_FILE_SUFFIXES)
    if len(files) != 1:
        found = ", ".join(p.name for p in files) or "none"
        raise ValueError(f"{path} is not a ROS 2 bag: no metadata.yaml, and it must then hold exactly one .mcap "
                         f"or .db3 file (found: {found})")
    return files[0]


def is_bag(path: str | Path) -> bool:
    """Whether :func:`bag_storage_path` accepts ``path`` (a bag folder or file)."""
    try:
        bag_storage_path(path)
    except (FileNotFoundError, ValueError):
        return False
    return True


def open_bag(path: str | Path, *, recover_damaged: bool = True) -> Reader | Ros1Bag | RecoveredMcap:
    """An open reader of the bag at ``path`` (see the module docstring); with ``recover_damaged``, a damaged mcap
    file gives a :class:`RecoveredMcap` (check its ``damage``). Close it when done.

    Raises FileNotFoundError / ValueError when ``path`` is no readable bag.
    """
    storage = bag_storage_path(path)
    if storage.suffix == ROS1_BAG_SUFFIX:
        try:
            return Ros1Bag(storage)
        except Ros1ReaderError as error:
            raise ValueError(f"cannot read the ROS 1 bag {storage}: {error}") from None
    reader = Reader(storage)
    try:
        reader.open()
    except ReaderError as error:
        files = [storage] if storage.is_file() else sorted(storage.glob("*.mcap"))
        if recover_damaged and len(files) == 1 and files[0].suffix == ".mcap":
            return RecoveredMcap(files[0], str(error).rstrip("."))
        raise ValueError(f"cannot read the bag {storage}: {error}") from None
    return reader

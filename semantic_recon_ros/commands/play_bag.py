"""Play a bag on live topics (a small `ros2 bag play`: rclpy + rosbags, no rosbag2 install).

A ROS 2 bag's messages are republished as recorded (raw bytes), a ROS 1 .bag file's as their ROS 2 equivalents
(topics without one are left out, with a warning), at the recorded rate times --rate; /tf_static is latched;
--clock publishes the bag time on /clock for nodes with use_sim_time. The camera topics are published on the
default names (/camera/color/image_raw[/compressed], /camera/depth/image_raw[/compressedDepth],
/camera/color/camera_info) the node's documented remaps expect: those named by --color-topic, --depth-topic and
--camera-info-topic (raw or compressed), and, for an option not given when the bag has no topic of the default name
(nor its compressed variant), the one topic of that kind found by message type, as `semantic-recon map` finds it
(none or several: the bag's topics keep their names). Ctrl-C stops playback.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from tqdm import tqdm

from ..core.datasets.bag_files import bag_storage_path, open_bag
from ..core.datasets.bag_topics import (
    COMPRESSED_IMAGE_TYPE,
    IMAGE_KINDS,
    RosbagTopics,
    named_topic,
    qualified,
    topic_types,
    topics_by_type,
)
from ..core.datasets.ros1_bags import ROS1_BAG_SUFFIX

_DEFAULT_RATE = 1.0
TEARDOWN_TIMEOUT_S = 10.0
EXIT_NO_SUBSCRIBERS = 3
# option -> (kind of camera topic, default published topic, suffix of its compressed variant)
CAMERA_TOPICS = {"color_topic": ("color", RosbagTopics.color, IMAGE_KINDS["color"][0]),
                 "depth_topic": ("depth", RosbagTopics.depth, IMAGE_KINDS["depth"][0]),
                 "camera_info_topic": ("camera_info", RosbagTopics.camera_info, "")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="ROS 2 bag (a folder, sqlite3 or mcap, or a .mcap / .db3 file) or ROS 1 .bag file")
    parser.add_argument("--rate", type=float, default=_DEFAULT_RATE, help="playback speed factor")
    parser.add_argument("--clock", action="store_true", help="publish /clock (rosgraph_msgs/Clock) with the bag time")
    for option, (_, default, suffix) in CAMERA_TOPICS.items():
        parser.add_argument(f"--{option.replace('_', '-')}", default=None, metavar="BAG_TOPIC",
                            help=f"the bag's topic published as {default}" + (f" (or {default}{suffix} for the "
                                                                              "compressed variant)" if suffix else "")
                            + "; default: found by message type when the bag has no such topic")
    parser.add_argument("--topic-prefix", default="", help="namespace prepended to all topics except /tf and /tf_static")
    parser.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to this long for a subscriber on every topic before starting")
    parser.add_argument("--require-subscribers", action="store_true",
                        help=f"with --wait-for-subscribers: publish nothing and exit with status "
                             f"{EXIT_NO_SUBSCRIBERS} when a topic still has no subscriber")


def camera_remaps(args: argparse.Namespace, reader) -> tuple[tuple[tuple[str, str], ...], list[str]]:
    """((bag topic, published topic) pairs of the camera topics, notes for the user).

    A topic named by an option is published under the default name (a raw name given for a bag that only has its
    compressed variant selects that variant); for an option not given, when the bag (``reader``, a bag reader of
    :mod:`~semantic_recon_ros.core.datasets.bag_files`) has no topic of the default name nor its compressed variant,
    so is the one topic of that kind found by message type (a note says so; several: a note, and no remap).
    Compressed images are published under ``<default><suffix>``.
    """
    types = topic_types(reader)
    remaps, notes = [], []
    for option, (kind, default, suffix) in CAMERA_TOPICS.items():
        given = getattr(args, option)
        if given is not None:
            topic = named_topic(reader, kind, given) or qualified(given)
        elif named_topic(reader, kind, default) is not None:
            continue
        else:
            found = topics_by_type(reader, kind, exclude=[RosbagTopics.semantic])
            if len(found) > 1:
                notes.append(f"several {kind} topics ({', '.join(found)}): published under their own names; "
                             f"name one with --{option.replace('_', '-')}")
            if len(found) != 1:
                continue
            topic = found[0]
        published = default + suffix if types.get(topic) == COMPRESSED_IMAGE_TYPE else default
        if given is None:
            notes.append(f"publishing {topic} as {published} (its {kind} topic, found by message type)")
        remaps.append((topic, published))
    return tuple(remaps), notes


def run(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.node import Node
    from rclpy.signals import SignalHandlerOptions

    from ..ros.bag_player import BagPlayer, BagPlayerConfig, MissingSubscribers

    storage = bag_storage_path(args.bag)  # a path that is no bag fails here, a bag that cannot be read below
    try:
        reader = open_bag(storage, recover_damaged=False)
    except ValueError as error:
        if storage.suffix == ROS1_BAG_SUFFIX:
            raise
        raise ValueError(f"{error} (`semantic-recon map` reads a damaged .mcap file up to the damage)") from None
    try:
        remaps, notes = camera_remaps(args, reader)
    finally:
        reader.close()
    for note in notes:
        print(note, flush=True)
    config = BagPlayerConfig(
        rate=args.rate,
        topic_remaps=remaps,
        publish_clock=args.clock,
        topic_prefix=args.topic_prefix,
        wait_for_subscribers=args.wait_for_subscribers,
        require_subscribers=args.require_subscribers,
    )
    # Python's own SIGINT handling (KeyboardInterrupt) instead of rclpy's, which would shut the
    # context down under a running publisher; this node never spins, so nothing else needs rclpy's.
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = Node("bag_player")
    player = None
    try:
        player = BagPlayer(node, args.bag, config)
        print(f"playing {player.message_count} messages ({player.duration_s:.1f} s at rate {args.rate}) "
              f"on {', '.join(player.topics)}", flush=True)
        with tqdm(total=player.message_count, desc=f"playing {args.bag}", unit="msg") as progress:
            count = player.play(on_message=lambda topic: progress.update())
        print(f"published {count} messages on {len(player.topics)} topics", flush=True)
        code = 0
    except MissingSubscribers as error:
        print(f"play-bag: {error}; published nothing", file=sys.stderr, flush=True)
        code = EXIT_NO_SUBSCRIBERS
    except KeyboardInterrupt:
        published = sum(player.published.values()) if player is not None else 0
        print(f"playback stopped (Ctrl-C) after {published} messages", flush=True)
        code = 130
    finally:
        # DDS teardown can block on a slow reliable subscriber; everything is published by now, so
        # a player must not hang here: give the teardown a bounded time, then exit anyway.
        teardown = threading.Thread(target=_close, args=(player, node), daemon=True)
        teardown.start()
        teardown.join(TEARDOWN_TIMEOUT_S)
    if teardown.is_alive():
        print(f"warning: DDS teardown did not finish within {TEARDOWN_TIMEOUT_S:g} s; exiting anyway",
              file=sys.stderr, flush=True)
        os._exit(code)
    return code


def _close(player, node) -> None:
    import rclpy

    if player is not None:
        player.close()
    node.destroy_node()
    rclpy.try_shutdown()

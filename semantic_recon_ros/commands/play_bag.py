"""Play a ROS 2 bag on live topics (a small `ros2 bag play`: rclpy + rosbags, no rosbag2 install).

Messages are republished as recorded (raw bytes) at the recorded rate times --rate; /tf_static is
latched; --clock publishes the bag time on /clock for nodes with use_sim_time. --color-topic, --depth-topic and
--camera-info-topic name the bag's camera topics (raw or compressed), which are then published on the default
names (/camera/color/image_raw[/compressed], /camera/depth/image_raw[/compressedDepth], /camera/color/camera_info)
the node's documented remaps expect. Ctrl-C stops playback.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from tqdm import tqdm

from ..core.datasets.bag_files import bag_storage_path
from ..core.datasets.rosbag_sequence import RosbagTopics

_DEFAULT_RATE = 1.0
TEARDOWN_TIMEOUT_S = 10.0
EXIT_NO_SUBSCRIBERS = 3
# option -> (default published topic, suffix of its compressed variant)
CAMERA_TOPICS = {"color_topic": (RosbagTopics.color, "/compressed"),
                 "depth_topic": (RosbagTopics.depth, "/compressedDepth"),
                 "camera_info_topic": (RosbagTopics.camera_info, "")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="ROS 2 bag: a folder (sqlite3 or mcap) or a .mcap / .db3 file")
    parser.add_argument("--rate", type=float, default=_DEFAULT_RATE, help="playback speed factor")
    parser.add_argument("--clock", action="store_true", help="publish /clock (rosgraph_msgs/Clock) with the bag time")
    for option, (default, suffix) in CAMERA_TOPICS.items():
        parser.add_argument(f"--{option.replace('_', '-')}", default=None, metavar="BAG_TOPIC",
                            help=f"the bag's topic published as {default}" + (f" (or {default}{suffix} for the "
                                                                              "compressed variant)" if suffix else ""))
    parser.add_argument("--topic-prefix", default="", help="namespace prepended to all topics except /tf and /tf_static")
    parser.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to this long for a subscriber on every topic before starting")
    parser.add_argument("--require-subscribers", action="store_true",
                        help=f"with --wait-for-subscribers: publish nothing and exit with status "
                             f"{EXIT_NO_SUBSCRIBERS} when a topic still has no subscriber")


def camera_remaps(args: argparse.Namespace, bag_topics: set[str]) -> tuple[tuple[str, str], ...]:
    """(bag topic, published topic) pairs of the camera topic options; a raw topic name given for a bag that only
    has its compressed variant selects that variant."""
    remaps = []
    for option, (default, suffix) in CAMERA_TOPICS.items():
        topic = getattr(args, option)
        if topic is None:
            continue
        topic = topic if topic.startswith("/") else "/" + topic
        if suffix and topic not in bag_topics and topic + suffix in bag_topics:
            topic += suffix
        remaps.append((topic, default + suffix if suffix and topic.endswith(suffix) else default))
    return tuple(remaps)


def run(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.node import Node
    from rclpy.signals import SignalHandlerOptions

    from rosbags.rosbag2 import Reader, ReaderError

    from ..ros.bag_player import BagPlayer, BagPlayerConfig, MissingSubscribers

    try:
        with Reader(bag_storage_path(args.bag)) as reader:
            bag_topics = {connection.topic for connection in reader.connections}
    except ReaderError as error:
        raise ValueError(f"cannot play the bag {args.bag}: {error} (`semantic-recon map` reads a damaged .mcap file "
                         "up to the damage)") from None
    config = BagPlayerConfig(
        rate=args.rate,
        topic_remaps=camera_remaps(args, bag_topics),
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

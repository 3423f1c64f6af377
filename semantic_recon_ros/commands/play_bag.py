"""Play a ROS 2 bag on live topics (a small `ros2 bag play`: rclpy + rosbags, no rosbag2 install).

Messages are republished as recorded (raw bytes) at the recorded rate times --rate; /tf_static is
latched; --clock publishes the bag time on /clock for nodes with use_sim_time. Ctrl-C stops playback.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

from tqdm import tqdm

_DEFAULT_RATE = 1.0
TEARDOWN_TIMEOUT_S = 10.0
EXIT_NO_SUBSCRIBERS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="ROS 2 bag folder (sqlite3 or mcap)")
    parser.add_argument("--rate", type=float, default=_DEFAULT_RATE, help="playback speed factor")
    parser.add_argument("--clock", action="store_true", help="publish /clock (rosgraph_msgs/Clock) with the bag time")
    parser.add_argument("--topic-prefix", default="", help="namespace prepended to all topics except /tf and /tf_static")
    parser.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to this long for a subscriber on every topic before starting")
    parser.add_argument("--require-subscribers", action="store_true",
                        help=f"with --wait-for-subscribers: publish nothing and exit with status "
                             f"{EXIT_NO_SUBSCRIBERS} when a topic still has no subscriber")


def run(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.node import Node
    from rclpy.signals import SignalHandlerOptions

    from ..ros.bag_player import BagPlayer, BagPlayerConfig, MissingSubscribers

    config = BagPlayerConfig(
        rate=args.rate,
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

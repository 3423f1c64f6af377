"""Watch the ROS 2 node map real frames: the mapping node and a bag player as processes over DDS, end to end.

    semantic-recon demo                                  # ../shared/data/7scenes-redkitchen beside the repository
    semantic-recon demo SEQUENCE --out output/demo --frames 150 --stride 4 [-p checkpoint:="''"]

1. bag: --frames frames (every --stride-th) of SEQUENCE (7-Scenes, TUM or ScanNet-style folder) written into OUT
   as a compressed ROS 2 bag (`make-bag --compressed`: png color, 16UC1 compressedDepth, camera_info, /tf),
   stamped at the camera's 30 frames/s divided by the stride (the camera moves at its recorded speed); a later
   run with the same frames reuses it;
2. node: the mapping node started as a process (`mapping_node --ros-args --params-file config/mapping.yaml
   --params-file config/datasets/7scenes_bag.yaml`, compressed transports, sim time, save_on_shutdown,
   output_dir OUT/map, the camera topics remapped, then the -p overrides);
3. play: once the node is up, `semantic-recon play-bag BAG --clock` as a process, which waits for the node's
   subscriptions;
4. when the bag has ended and the node has integrated every frame it received (its status lines) and its
   completion network has caught up, Ctrl-C (SIGINT) to the node: it saves the map into OUT/map
   (maps/NNNNNN, current, mesh_rgb.ply, mesh_semantic.ply, volume.pt, mesh_additions.ply) and exits;
5. OUT/preview.png (the saved map from above, color and labels) and OUT/summary.json.

Both processes run on a ROS domain of their own (a free one in 215-232 unless --domain-id) with
FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA (images do not fit Fast DDS's default shared memory); their output goes to
OUT/node.log and OUT/player.log. Whether the demo ends, fails or is stopped (Ctrl-C, SIGTERM), it leaves no
process running. Exit codes: 0 done, 1 a process failed (the end of its log is shown), 2 bad arguments or
missing data, 130 stopped.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..core.classes import load_class_set
from ..core.datasets import open_sequence
from ..core.datasets.rosbag_sequence import RosbagSequence, RosbagTopics
from ..core.datasets.rosbag_writer import RosbagWriter, RosbagWriterConfig
from ..core.map_folder import MapFolder
from ..core.mesh_preview import camera_view, preview_picture
from ..core.ply import read_semantic_ply
from ..core.resources import share_file
from .play_bag import EXIT_NO_SUBSCRIBERS

SHARED_SEQUENCE = Path("..", "shared", "data", "7scenes-redkitchen")  # relative to the repository root
DEFAULT_OUT = Path("output", "demo")
DEFAULT_FRAMES = 150  # with the stride: the 600 frames of 7-Scenes' redkitchen, 20 s of playback
DEFAULT_STRIDE = 4
CAMERA_FRAME_RATE = 30.0  # 7-Scenes, TUM and ScanNet cameras
PARAMS_FILES = ("config/mapping.yaml", "config/datasets/7scenes_bag.yaml")
NODE_PARAMETERS = {"use_sim_time": "true", "color_transport": "compressed", "depth_transport": "compressed",
                   "save_on_shutdown": "true", "status_period": "1.0"}
NODE_REMAPS = {"color/image_raw": RosbagTopics.color, "depth/image_raw": RosbagTopics.depth,
               "color/camera_info": RosbagTopics.camera_info}
# Linux keeps domains 0-101 and 215-232 clear of ephemeral ports; the tests take 100-199
DOMAIN_IDS = range(215, 233)
DOMAIN_PROBE_S = 1.0
NODE_START_TIMEOUT_S = 180.0  # torch, the completion network and the segmenter load first; slow on a busy machine
PLAYER_ATTEMPTS = 3  # a new player is a new DDS participant: discovery afresh
PLAYER_DISCOVERY_S = 30.0
PLAYER_MARGIN_S = 60.0  # a player still running this long after its discovery wait and the bag's duration is stuck
STALL_TIMEOUT_S = 30.0  # no progress of the node's counters for this long after the bag ended: stop waiting
COMPLETION_TIMEOUT_S = 60.0
SAVE_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 40
EXIT_FAILED, EXIT_STOPPED = 1, 130

# the node's status log line (MappingNode.report_status) and its shutdown save line (MappingNode.shutdown)
STATUS_LINE = re.compile(r"frames in (\d+), integrated (\d+), dropped (\d+)(?: \(([^)]*)\))?;.*?"
                         r"queue (\d+)/\d+,.*?blocks (\d+)")
COMPLETION_PART = re.compile(r"completion: (\d+) runs, \d+ chunks done, (\d+) pending")
SAVED_LINE = re.compile(r"saved the map on shutdown: (\d+) triangles, (\d+) blocks -> (\S+)")


class DemoFailed(RuntimeError):
    """A step failed; ``log`` names the log file whose end explains it."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


class Stopped(Exception):
    """SIGTERM, handled like Ctrl-C."""


@dataclass
class NodeStatus:
    """The numbers of one status line of the node."""

    frames_in: int
    integrated: int
    dropped: int
    dropped_reasons: dict[str, int]
    queue: int
    blocks: int
    completion_runs: int | None = None  # None: no completion network
    completion_pending: int | None = None

    @classmethod
    def parse(cls, line: str) -> "NodeStatus | None":
        match = STATUS_LINE.search(line)
        if match is None:
            return None
        reasons = {}
        for part in filter(None, (match[4] or "").split(", ")):
            reason, _, count = part.rpartition(" ")
            reasons[reason] = int(count)
        status = cls(int(match[1]), int(match[2]), int(match[3]), reasons, int(match[5]), int(match[6]))
        completion = COMPLETION_PART.search(line)
        if completion is not None:
            status.completion_runs, status.completion_pending = int(completion[1]), int(completion[2])
        return status

    @property
    def idle(self) -> bool:
        """Every frame received is integrated or dropped."""
        return self.queue == 0 and self.integrated + self.dropped == self.frames_in

    def text(self, frames: int) -> str:
        completion = ("" if self.completion_runs is None else
                      f", completion {self.completion_runs} runs ({self.completion_pending} chunks pending)")
        return (f"node: {self.frames_in}/{frames} frames in, {self.integrated} integrated, {self.dropped} dropped, "
                f"queue {self.queue}, {self.blocks} blocks{completion}")


@dataclass
class NodeLog:
    """Follows the node's log file: its newest status and its shutdown save."""

    path: Path
    status: NodeStatus | None = None
    saved: tuple[int, int, str] | None = None  # triangles, blocks, save folder
    _offset: int = 0
    _partial: str = field(default="", repr=False)

    def read(self) -> None:
        try:
            with open(self.path, "rb") as log:
                log.seek(self._offset)
                data = log.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        lines = (self._partial + data.decode("utf-8", "replace")).split("\n")
        self._partial = lines.pop()  # an unfinished line: completed by the next read
        for line in lines:
            status = NodeStatus.parse(line)
            if status is not None:
                self.status = status
            elif (saved := SAVED_LINE.search(line)) is not None:
                self.saved = int(saved[1]), int(saved[2]), saved[3]


def repository_root() -> Path:
    """The folder holding this package's source tree (the repository, for a checkout or an editable install)."""
    return Path(__file__).resolve().parents[2]


def default_sequence() -> Path:
    """The shared 7-Scenes frames beside the repository (or beside the working directory); FileNotFoundError
    naming the places looked in when neither has them."""
    candidates = list(dict.fromkeys(os.path.normpath(root / SHARED_SEQUENCE) for root in (repository_root(),
                                                                                          Path.cwd())))
    for candidate in candidates:
        if Path(candidate).is_dir():
            return Path(candidate)
    raise FileNotFoundError(f"no SEQUENCE given and the shared 7-Scenes frames are not in {' or '.join(candidates)}; "
                            "put ../shared beside the repository or give a sequence folder (7-Scenes, TUM, ScanNet)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sequence", type=Path, nargs="?", default=None,
                        help=f"sequence folder (7-Scenes, TUM, ScanNet-style; default {SHARED_SEQUENCE} beside the "
                             "repository)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="output folder: the bag, map/, preview.png, summary.json, logs (default %(default)s)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames in the bag (default %(default)s)")
    parser.add_argument("--stride", type=int, default=DEFAULT_STRIDE,
                        help="use every N-th frame of the sequence (default %(default)s)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default %(default)s)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="a node parameter, applied last (e.g. -p checkpoint:=\"''\" for fusion only); repeatable")
    parser.add_argument("--domain-id", type=int, default=None,
                        help=f"ROS_DOMAIN_ID of node and player (default: a free one in {DOMAIN_IDS.start}-"
                             f"{DOMAIN_IDS.stop - 1})")


# ---------------------------------------------------------------------------------------------------- steps
def ensure_bag(sequence_path: Path, out: Path, frames: int, stride: int) -> Path:
    """The compressed bag of the selected frames in ``out``: written (into a temporary folder renamed when
    complete), or reused when a complete one is there."""
    sequence = open_sequence(sequence_path).subset(stride=stride, max_frames=frames)
    if len(sequence) == 0:
        raise ValueError(f"{sequence_path}: no frames selected")
    bag = out / f"bag_{sequence.name}_stride{stride}_{len(sequence)}frames"
    if (bag / "metadata.yaml").is_file():
        print(f"[1/5] reusing the bag {bag} ({len(sequence)} frames)", flush=True)
        return bag
    frame_rate = CAMERA_FRAME_RATE / stride
    print(f"[1/5] writing {len(sequence)} frames of {sequence_path} (stride {stride}) into a compressed bag at "
          f"{frame_rate:g} frames/s: {bag}", flush=True)
    partial = out / f".{bag.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(bag, ignore_errors=True)  # an incomplete bag (no metadata.yaml)
    config = RosbagWriterConfig(depth_encoding="16UC1", compression="png", frame_rate=frame_rate)
    with RosbagWriter(partial, config) as writer:
        for frame in tqdm(sequence, desc="writing the bag", unit="frame", leave=False):
            writer.write(frame)
    os.rename(partial, bag)
    return bag


def free_domain_id() -> int:
    """A ROS domain id in DOMAIN_IDS on which no node shows up within DOMAIN_PROBE_S."""
    import rclpy

    saved = {name: os.environ.get(name) for name in ("FASTDDS_BUILTIN_TRANSPORTS",)}
    os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA"  # as the demo's processes: they see each other
    try:
        # in random order: demos started together do not probe the same domains in step
        for domain_id in random.sample(DOMAIN_IDS, len(DOMAIN_IDS)):
            context = rclpy.Context()
            rclpy.init(context=context, domain_id=domain_id)
            try:
                node = rclpy.create_node("semantic_recon_demo_probe", context=context)
                time.sleep(DOMAIN_PROBE_S)
                if node.get_node_names() == ["semantic_recon_demo_probe"]:
                    return domain_id
            finally:
                rclpy.try_shutdown(context=context)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    raise DemoFailed(f"every ROS domain in {DOMAIN_IDS.start}-{DOMAIN_IDS.stop - 1} is in use; give --domain-id")


def child_environment(domain_id: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY")}
    env.update(ROS_DOMAIN_ID=str(domain_id), FASTDDS_BUILTIN_TRANSPORTS="LARGE_DATA", PYTHONUNBUFFERED="1",
               RCUTILS_COLORIZED_OUTPUT="0")
    return env


def node_arguments(map_dir: Path, params: list[str]) -> list[str]:
    """The node's ``--ros-args`` (parameter files, the demo's parameters, remaps, then ``params``)."""
    args = ["--ros-args"]
    for name in PARAMS_FILES:
        args += ["--params-file", str(share_file(name))]
    for name, value in {**NODE_PARAMETERS, "output_dir": str(map_dir.resolve())}.items():
        args += ["-p", f"{name}:={value}"]
    for name, topic in NODE_REMAPS.items():
        args += ["-r", f"{name}:={topic}"]
    for param in params:
        if ":=" not in param:
            raise ValueError(f"-p {param!r}: expected NAME:=VALUE")
        args += ["-p", param]
    return args


_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _child_setup() -> None:
    """In the child before exec: SIGINT as usual (a background shell may have ignored it) and SIGTERM when the
    demo dies, however it dies (kill -9 included): the node then saves its map and exits."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``args`` as a process in a session of its own (a terminal's Ctrl-C reaches the demo only, which stops it),
    output appended to ``log``."""
    with open(log, "a") as output:
        return subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_child_setup)


def stop(process: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGINT, then SIGKILL when it has not exited within ``timeout`` (at once on another Ctrl-C)."""
    if process.poll() is not None:
        return
    try:
        process.send_signal(signal.SIGINT)
        process.wait(timeout)
    except (subprocess.TimeoutExpired, KeyboardInterrupt, Stopped):
        process.kill()
        process.wait()


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return f"({path} was not written)"
    return "\n".join(text[-lines:])


class Demo:
    """The running processes and what the demo measured (see the module docstring)."""

    def __init__(self, out: Path, frames: int, env: dict[str, str]) -> None:
        self.out = out
        self.frames = frames
        self.env = env
        self.node_log = NodeLog(out / "node.log")
        self.player_log = out / "player.log"
        self.node: subprocess.Popen | None = None
        self.player: subprocess.Popen | None = None
        self._printed = (None, 0.0)

    def close(self) -> None:
        """Stop whatever still runs: the player first, then the node."""
        for process in (self.player, self.node):
            if process is not None:
                stop(process)

    def poll(self) -> NodeStatus | None:
        """Read the node's log, print its progress (at most once a second), fail when the node has exited."""
        self.node_log.read()
        status = self.node_log.status
        if status is not None:
            text = status.text(self.frames)
            if text != self._printed[0] and time.monotonic() - self._printed[1] >= 1.0:
                print(f"      {text}", flush=True)
                self._printed = (text, time.monotonic())
        if self.node.poll() is not None:
            raise DemoFailed(f"the mapping node exited with status {self.node.returncode}", self.node_log.path)
        return status

    def start_node(self, arguments: list[str]) -> float:
        """Start the node and wait for its first status line; returns the seconds that took."""
        begin = time.monotonic()
        self.node_log.path.write_text("")
        self.node = start([sys.executable, "-m", "semantic_recon_ros.ros.mapping_node", *arguments],
                          self.node_log.path, self.env)
        while self.poll() is None:
            if time.monotonic() - begin > NODE_START_TIMEOUT_S:
                raise DemoFailed(f"the mapping node did not start within {NODE_START_TIMEOUT_S:g} s",
                                 self.node_log.path)
            time.sleep(0.2)
        return time.monotonic() - begin

    def play(self, bag: Path, rate: float, duration_s: float) -> float:
        """Play the bag (``duration_s`` of bag time) to the node, with new players while none finds the node's
        subscriptions; a player stuck past its time (seen in DDS teardown after a failed discovery) is killed.
        Returns the seconds that took."""
        begin = time.monotonic()
        limit = PLAYER_DISCOVERY_S + duration_s / rate + PLAYER_MARGIN_S
        self.player_log.write_text("")
        command = [sys.executable, "-m", "semantic_recon_ros.cli", "play-bag", str(bag), "--clock", "--rate",
                   str(rate), "--wait-for-subscribers", str(PLAYER_DISCOVERY_S), "--require-subscribers"]
        for attempt in range(1, PLAYER_ATTEMPTS + 1):
            offset = self.player_log.stat().st_size  # this attempt's output follows
            self.player, started = start(command, self.player_log, self.env), time.monotonic()
            while self.player.poll() is None:
                self.poll()
                if time.monotonic() - started > limit:
                    self.player.kill()
                    self.player.wait()
                    if b"published nothing" not in self.player_log.read_bytes()[offset:]:
                        raise DemoFailed(f"the bag player did not finish within {limit:g} s", self.player_log)
                    break  # stuck after finding no subscriptions: as if it had exited
                time.sleep(0.2)
            if self.player.returncode not in (EXIT_NO_SUBSCRIBERS, -signal.SIGKILL):
                break
            print(f"      the player found no subscriptions in {PLAYER_DISCOVERY_S:g} s (attempt {attempt} of "
                  f"{PLAYER_ATTEMPTS})", flush=True)
        if self.player.returncode != 0:
            raise DemoFailed(f"the bag player exited with status {self.player.returncode}", self.player_log)
        return time.monotonic() - begin

    def wait_until_integrated(self) -> tuple[NodeStatus, float]:
        """Wait until the node has received every frame (or its counters stall for STALL_TIMEOUT_S) and has
        integrated or dropped each; returns its status and the seconds waited."""
        begin = last_change = time.monotonic()
        previous = None
        while True:
            status = self.poll()
            counters = (status.frames_in, status.integrated, status.queue)
            if counters != previous:
                previous, last_change = counters, time.monotonic()
            if status.idle and status.frames_in >= self.frames:
                return status, time.monotonic() - begin
            if time.monotonic() - last_change > STALL_TIMEOUT_S:
                if status.idle:
                    print(f"      warning: only {status.frames_in} of {self.frames} frames reached the node",
                          flush=True)
                    return status, time.monotonic() - begin
                raise DemoFailed(f"the node made no progress for {STALL_TIMEOUT_S:g} s", self.node_log.path)
            time.sleep(0.2)

    def wait_for_completion(self, idle: NodeStatus) -> float:
        """With a completion network: wait until a run that started after the last frame left nothing pending
        (at most COMPLETION_TIMEOUT_S); returns the seconds waited."""
        begin = time.monotonic()
        if idle.completion_runs is None:
            return 0.0
        while time.monotonic() - begin < COMPLETION_TIMEOUT_S:
            status = self.poll()
            if status.completion_runs >= idle.completion_runs + 2 and status.completion_pending == 0:
                return time.monotonic() - begin
            time.sleep(0.2)
        print(f"      warning: the completion network still had {self.node_log.status.completion_pending} chunks "
              f"pending after {COMPLETION_TIMEOUT_S:g} s; the map keeps what it completed", flush=True)
        return time.monotonic() - begin

    def stop_node_and_save(self) -> float:
        """SIGINT to the node, which saves its map and exits 0; returns the seconds that took."""
        begin = time.monotonic()
        self.node.send_signal(signal.SIGINT)
        try:
            code = self.node.wait(SAVE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise DemoFailed(f"the node did not save its map and exit within {SAVE_TIMEOUT_S:g} s of SIGINT",
                             self.node_log.path) from None
        self.node_log.read()
        if code != 0:
            raise DemoFailed(f"the mapping node exited with status {code} after SIGINT", self.node_log.path)
        if self.node_log.saved is None:
            raise DemoFailed("the mapping node exited without saving its map", self.node_log.path)
        return time.monotonic() - begin


def write_preview(map_dir: Path, poses: list, title: str, out: Path) -> tuple[int, int | None]:
    """OUT/preview.png of the map's current save; returns its triangles and the additions' (None: none saved)."""
    folder = MapFolder(map_dir, ()).current()
    if folder is None:
        raise DemoFailed(f"no saved map in {map_dir}")
    mesh, _ = read_semantic_ply(folder / "mesh_rgb.ply")
    additions = None
    if (folder / "mesh_additions.ply").is_file():
        additions = read_semantic_ply(folder / "mesh_additions.ply")[0].num_triangles
    pictured = f"{mesh.num_triangles} triangles" + (f" (+{additions}: mesh_additions.ply)" if additions else "")
    preview_picture(mesh, load_class_set(), camera_view(poses, mesh), f"{title}, {pictured}").save(out)
    return mesh.num_triangles, additions


def run(args: argparse.Namespace) -> int:
    if args.frames < 1 or args.stride < 1:
        raise ValueError("--frames and --stride must be at least 1")
    if not args.rate > 0:
        raise ValueError("--rate must be positive")
    sequence_path = args.sequence if args.sequence is not None else default_sequence()
    if not sequence_path.is_dir():
        raise FileNotFoundError(f"sequence folder not found: {sequence_path}")
    out, begin = args.out, time.monotonic()
    map_dir = out / "map"
    node_args = node_arguments(map_dir, args.param)  # bad -p values fail before anything starts
    out.mkdir(parents=True, exist_ok=True)

    previous_sigterm = signal.signal(signal.SIGTERM, _raise_stopped)
    demo = None
    try:
        seconds = {}
        bag = ensure_bag(sequence_path, out, args.frames, args.stride)
        with RosbagSequence(bag) as recorded:
            poses, frames = recorded.poses, len(recorded)
        seconds["bag"] = time.monotonic() - begin
        domain_id = args.domain_id if args.domain_id is not None else free_domain_id()
        demo = Demo(out, frames, child_environment(domain_id))
        print(f"[2/5] starting the mapping node on ROS domain {domain_id} (log: {demo.node_log.path}):\n      "
              f"mapping_node {shlex.join(node_args)}", flush=True)
        seconds["node_start"] = demo.start_node(node_args)
        print(f"      the node is up after {seconds['node_start']:.1f} s", flush=True)
        print(f"[3/5] playing the bag over DDS (log: {demo.player_log}):\n      "
              f"semantic-recon play-bag {shlex.quote(str(bag))} --clock --rate {args.rate:g}", flush=True)
        seconds["play"] = demo.play(bag, args.rate, frames * args.stride / CAMERA_FRAME_RATE)
        print(f"[4/5] the bag has ended ({frames} frames in {seconds['play']:.1f} s); waiting for the node to "
              "integrate every frame", flush=True)
        status, seconds["integrate_wait"] = demo.wait_until_integrated()
        seconds["completion_wait"] = demo.wait_for_completion(status)
        status = demo.node_log.status  # the same frames, the completion network's newest numbers
        print(f"      {status.text(frames)}\n      Ctrl-C (SIGINT) to the node: it saves the map into {map_dir}",
              flush=True)
        seconds["save"] = demo.stop_node_and_save()
        triangles, blocks, folder = demo.node_log.saved
        print(f"      saved {triangles} triangles, {blocks} blocks -> {folder} in {seconds['save']:.1f} s", flush=True)

        start_preview = time.monotonic()
        preview = out / "preview.png"
        print(f"[5/5] writing {preview}", flush=True)
        title = f"{sequence_path.name}: {status.integrated} frames mapped by mapping_node over DDS"
        triangles, additions = write_preview(map_dir, poses, title, preview)
        seconds["preview"] = time.monotonic() - start_preview
        seconds["total"] = time.monotonic() - begin
        summary = {
            "sequence": str(sequence_path), "bag": str(bag), "map": str(map_dir), "preview": str(preview),
            "domain_id": domain_id, "frames_in_bag": frames, "frames_played": frames,
            "frames_received": status.frames_in, "frames_integrated": status.integrated,
            "frames_dropped": status.dropped, "dropped_reasons": status.dropped_reasons, "blocks": blocks,
            "triangles": triangles, "additions_triangles": additions, "saved_folder": folder,
            "seconds": {name: round(value, 1) for name, value in seconds.items()},
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"done in {seconds['total']:.0f} s: {frames} frames played, {status.integrated} integrated, "
              f"{status.dropped} dropped; map of {triangles} triangles"
              + (f" (+{additions} added by the completion network)" if additions is not None else "")
              + f" in {map_dir}; {preview}; {out / 'summary.json'}", flush=True)
        return 0
    except DemoFailed as error:
        print(f"semantic-recon demo: error: {error}", file=sys.stderr, flush=True)
        if error.log is not None:
            print(f"--- the end of {error.log} ---\n{log_tail(error.log)}\n---", file=sys.stderr, flush=True)
        return EXIT_FAILED
    except (KeyboardInterrupt, Stopped):
        print("semantic-recon demo: stopped; stopping the node and the player", file=sys.stderr, flush=True)
        return EXIT_STOPPED
    finally:
        if demo is not None:
            demo.close()
        signal.signal(signal.SIGTERM, previous_sigterm)


def _raise_stopped(signum, frame) -> None:
    raise Stopped()

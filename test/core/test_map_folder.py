"""A saved map is one consistent set: the layout of a map folder (numbered saves, ``current``, links), folders of
older versions, leftovers of interrupted saves, and real processes killed by SIGKILL before every file system call
of a save and at random moments while saving a real-size map over and over."""

from __future__ import annotations

import filecmp
import os
import pickle
import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from semantic_recon_ros.core.classes import load_class_set
from semantic_recon_ros.core.config import VolumeConfig
from semantic_recon_ros.core.map import load_volume, save_volume
from semantic_recon_ros.core.map_folder import CURRENT_LINK, LOCK_FILE, SAVES_DIR, MapFolder
from semantic_recon_ros.core.mapper import (
    MESH_ADDITIONS_FILE,
    MESH_RGB_FILE,
    MESH_SEMANTIC_FILE,
    VOLUME_FILE,
    MapFrame,
    Mapper,
    map_folder,
)

from support import saved_maps
from support.crashing_saves import SaveCrasher
from support.frames import downscale
from support.saved_maps import LAYOUT, SET, assert_clean, kind, layout, stray

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CLASSES = load_class_set()
RANDOM_KILLS = 20


@pytest.fixture(scope="module")
def frames(seven_scenes):
    return [downscale(seven_scenes[i], 4) for i in range(0, 200, 20)]


def map_frame(frame) -> MapFrame:
    return MapFrame(frame.camera, frame.T_world_cam, frame.color, frame.depth, (frame.depth > 1.5).astype(np.int64))


def mapper_of(frames) -> Mapper:
    mapper = Mapper(VolumeConfig(), CLASSES)
    for frame in frames:
        mapper.integrate(map_frame(frame))
    return mapper


def assert_consistent(out) -> Path:
    return saved_maps.assert_consistent(out, CLASSES)


# ------------------------------------------------------------------ layout
def test_each_save_is_a_new_folder_that_becomes_current(frames, tmp_path):
    out = tmp_path / "map"
    mapper = mapper_of(frames[:3])
    first = mapper.save(out)
    mapper.integrate(map_frame(frames[5]))
    second = mapper.save(out)
    assert (first.folder.name, second.folder.name) == ("000001", "000002")
    assert layout(out) == (LAYOUT, [LOCK_FILE, "000001", "000002"])
    assert os.readlink(out / CURRENT_LINK) == "maps/000002" and os.readlink(out / VOLUME_FILE) == "current/volume.pt"
    assert second.volume == second.folder / VOLUME_FILE and second.summary()["folder"] == str(second.folder)
    assert assert_consistent(out) == second.folder
    assert load_volume(first.volume, "cpu").num_blocks == first.state.blocks < second.state.blocks  # kept as it was

    mapper.integrate(map_frame(frames[7]))
    third = mapper.save(out)
    assert layout(out)[1] == [LOCK_FILE, "000002", "000003"]  # the save before current is kept, older ones go
    assert_consistent(out)

    fresh = Mapper(VolumeConfig(), CLASSES)
    assert fresh.load(out).blocks == third.state.blocks  # the current save
    assert fresh.load(second.folder).blocks == second.state.blocks  # a save folder
    assert fresh.load(out / VOLUME_FILE).blocks == third.state.blocks  # the link


def test_a_folder_of_an_older_version_is_read_and_becomes_this_layout(frames, tmp_path):
    out = tmp_path / "old"
    mapper = mapper_of(frames[:2])
    save_volume(mapper.volume, out / VOLUME_FILE)  # regular files at the top, and leftovers of that version
    for name in (MESH_RGB_FILE, MESH_SEMANTIC_FILE, MESH_ADDITIONS_FILE):
        (out / name).write_bytes(b"an old mesh")
    for name in (".volume.pt.4242.tmp", ".mesh_rgb.ply.4242.tmp", "notes.txt", ".notes.txt.4242.tmp"):
        (out / name).write_text("x")
    assert Mapper(VolumeConfig(), CLASSES).load(out).blocks == mapper.volume.num_blocks
    assert map_folder(out).remove_leftovers() == [".mesh_rgb.ply.4242.tmp", ".volume.pt.4242.tmp"]
    assert not (out / SAVES_DIR).exists()  # nothing new at start-up in a folder never saved in this layout

    mapper.integrate(map_frame(frames[4]))
    mapper.save(out)
    assert_consistent(out)
    assert_clean(out, "notes.txt", ".notes.txt.4242.tmp")  # not ours: kept; the stale additions mesh went


def test_leftovers_of_interrupted_saves_are_removed_at_the_next_save_or_start(frames, tmp_path):
    out = tmp_path / "map"
    mapper = mapper_of(frames[:2])
    for _ in range(2):
        mapper.save(out)
    saves = out / SAVES_DIR
    (saves / ".new.999.ab12").mkdir()
    (saves / ".new.999.ab12" / VOLUME_FILE).write_bytes(b"half a volume")
    shutil.copytree(saves / "000002", saves / "000003")  # complete, but the switch never happened
    shutil.copytree(saves / "000001", saves / ".old.999.000000")  # a deletion interrupted
    os.symlink("maps/000003", out / ".current.999.tmp")
    os.symlink("current/volume.pt", out / ".volume.pt.999.tmp")
    folder = map_folder(out)
    with folder._lock():  # another thread or process saves: start-up cleanup leaves the folder alone
        assert folder.remove_leftovers(wait=False) == []
    removed = folder.remove_leftovers(wait=False)
    assert sorted(removed) == [".current.999.tmp", ".volume.pt.999.tmp", "maps/.new.999.ab12",
                               "maps/.old.999.000000", "maps/000003"]
    assert_clean(out)
    assert folder.current().name == "000002" and assert_consistent(out)


def test_a_failed_write_keeps_the_previous_save(frames, tmp_path):
    out = tmp_path / "map"
    mapper_of(frames[:2]).save(out)
    before = layout(out)

    def fail(directory):
        (directory / VOLUME_FILE).write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        MapFolder(out, SET).save(fail)
    assert layout(out) == before
    assert_consistent(out)


def test_saves_from_two_threads_never_mix(frames, tmp_path):
    out = tmp_path / "map"
    mappers = [mapper_of(frames[:3]), mapper_of(frames[3:6])]
    errors = []

    def save_three_times(mapper):
        try:
            for _ in range(3):
                mapper.save(out)
        except Exception as error:  # noqa: BLE001 -- reported below
            errors.append(error)

    threads = [threading.Thread(target=save_three_times, args=(mapper,)) for mapper in mappers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and map_folder(out).current().name == "000006"
    assert_consistent(out)
    assert_clean(out)


# ------------------------------------------------------------------ processes killed while saving
def write_frames(path, frames) -> None:
    path.write_bytes(pickle.dumps([(f.camera, f.T_world_cam, f.color, f.depth, (f.depth > 1.5).astype(np.int64))
                                   for f in frames]))


def killed(end: dict) -> bool:
    return os.WIFSIGNALED(end["status"]) and os.WTERMSIG(end["status"]) == signal.SIGKILL


def test_sigkill_before_any_file_system_call_of_a_save_leaves_the_old_or_the_new_set(frames, tmp_path):
    """The save kills itself just before its k-th call that changes the file system, for every k (a third save:
    the oldest save is deleted too). The folder always holds one consistent set, the old one up to the switch of
    current and the new one after it; the next start or save removes every leftover."""
    base = tmp_path / "base"
    mapper_of(frames[:6]).save(base)
    template = tmp_path / "template"
    for _ in range(2):
        mapper_of(frames[:4]).save(template)
    write_frames(tmp_path / "frames.pkl", frames[6:])
    outcomes = []
    with SaveCrasher(tmp_path / "frames.pkl", VolumeConfig().voxel_size) as crasher:
        dry = tmp_path / "dry"
        shutil.copytree(template, dry, symlinks=True)
        crasher.start(dry, base, saves=1)
        end = crasher.wait()
        assert end["saves"] == 1 and end["status"] == 0 and assert_consistent(dry)
        calls = end["calls"]
        for k in range(calls):
            out = tmp_path / f"killed_before_{k}"
            shutil.copytree(template, out, symlinks=True)
            crasher.start(out, base, saves=1, kill_before_call=k)
            end = crasher.wait()
            assert killed(end) and end["saves"] == 0, end
            folder = assert_consistent(out)
            old = filecmp.cmp(folder / VOLUME_FILE, template / "current" / VOLUME_FILE, shallow=False)
            outcomes.append(("old" if old else "new", tuple(kind(name, out) for name in stray(out))))
            map_folder(out).remove_leftovers()  # as at a node's start
            assert_clean(out)
            assert assert_consistent(out) == folder
    switched = [new == "new" for new, _ in outcomes]
    print(f"\n{calls} file system calls per save; killed before each: the old set stayed current "
          f"{switched.count(False)} times, the new one {switched.count(True)} times; kills that left "
          f"{dict(Counter(leftover for _, leftovers in outcomes for leftover in leftovers))}")
    assert switched == sorted(switched) and 0 < switched.count(True) < calls  # old ... old, new ... new
    assert any(leftovers for _, leftovers in outcomes)


@pytest.fixture(scope="module")
def real_size_map(seven_scenes, tmp_path_factory):
    """The whole 7-Scenes kitchen at 4 cm from 120 full-resolution frames (675 blocks, a 26 MB volume.pt), its
    folder, and frames to extend it with."""
    folder = tmp_path_factory.mktemp("kitchen")
    mapper = Mapper(VolumeConfig(), CLASSES)
    for i in range(0, 600, 5):
        mapper.integrate(map_frame(seven_scenes[i]))
    start = time.perf_counter()
    mapper.save(folder / "map")
    seconds = time.perf_counter() - start
    write_frames(folder / "frames.pkl", [seven_scenes[i] for i in range(2, 600, 100)])
    return folder / "map", folder / "frames.pkl", seconds


def test_sigkill_at_random_moments_of_repeated_saves_of_a_real_size_map(real_size_map, tmp_path):
    """A process saves the kitchen map again and again (one more frame fused before each save) into one folder
    and is killed by SIGKILL after a random time; 20 trials, all into the same folder. After every kill the
    folder holds one consistent set; the next save removes what the killed one left."""
    base, frames_file, save_seconds = real_size_map
    out = tmp_path / "map"
    shutil.copytree(base, out, symlinks=True)
    rng = np.random.default_rng()
    trials = []
    with SaveCrasher(frames_file, VolumeConfig().voxel_size) as crasher:
        for _ in range(RANDOM_KILLS):
            pid = crasher.start(out, base)
            delay = rng.uniform(0.0, 2.5 * save_seconds)
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            end = crasher.wait()
            assert killed(end), end
            leftovers = stray(out)
            assert_consistent(out)
            trials.append((delay, end["saves"], [kind(name, out) for name in leftovers]))
    map_folder(out).remove_leftovers()
    assert_clean(out)
    print(f"\none save of the real-size map: {save_seconds:.2f} s; {RANDOM_KILLS} kills after "
          f"{min(t[0] for t in trials):.2f}-{max(t[0] for t in trials):.2f} s, every time one consistent set; "
          f"saves completed before the kill: {[t[1] for t in trials]}; kills that left "
          f"{dict(Counter(leftover for *_, leftovers in trials for leftover in leftovers))}")
    assert sum(bool(leftovers) for *_, leftovers in trials) >= RANDOM_KILLS // 4  # kills landed inside saves
    assert sum(saves for _, saves, _ in trials) > 0

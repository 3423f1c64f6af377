"""BlockGrid: allocation within max_blocks, lookup, in-block layout, versions, and dense boxes."""

from __future__ import annotations

import pytest
import torch

from semantic_recon_ros.core.map import BlockGrid


def grid_with_values() -> BlockGrid:
    grid = BlockGrid(block_size=4, max_blocks=10, device="cpu")
    grid.add_layer("value", (64,), -1.0)
    grid.add_layer("rgb", (64, 3), 0.0)
    blocks = torch.tensor([[0, 0, 0], [1, 0, 0], [-1, 2, 5]])
    grid.allocate(blocks)
    voxels = grid.voxel_coords(torch.arange(grid.capacity * 64)[: 3 * 64])  # every voxel of the 3 blocks
    # a value that names the voxel: x * 10000 + y * 100 + z (with an offset to stay positive)
    key = ((voxels + 50) * torch.tensor([10000, 100, 1])).sum(dim=1).float()
    grid.write_voxels(voxels, value=key, rgb=key[:, None].expand(-1, 3))
    return grid


def test_layout_lookup_and_voxel_coordinates():
    grid = grid_with_values()
    assert grid.num_blocks == 3 and grid.layer("value").shape[1:] == (64,)
    assert grid.lookup(torch.tensor([[1, 0, 0], [9, 9, 9]])).tolist()[1] == -1
    voxel = torch.tensor([[5, 2, 3]])  # block (1, 0, 0), local (1, 2, 3)
    flat = grid.voxel_indices(voxel)
    assert int(flat[0] % 64) == int(grid.local_index(torch.tensor([1, 2, 3]))) == (1 * 4 + 2) * 4 + 3
    assert torch.equal(grid.voxel_coords(flat), voxel)
    assert float(grid.read_voxels(voxel)["value"][0]) == (55 * 10000 + 52 * 100 + 53)
    assert not grid.read_voxels(torch.tensor([[100, 0, 0]]))["allocated"][0]


def test_dense_boxes_round_trip_and_fill_absent_blocks():
    grid = grid_with_values()
    first = torch.tensor([[0, 0, 0], [-1, 2, 4]])  # the second box holds one allocated block of two
    boxes = grid.read_boxes(("value", "rgb"), first, (2, 1, 2))
    assert boxes["value"].shape == (2, 1, 8, 4, 8) and boxes["rgb"].shape == (2, 3, 8, 4, 8)
    # dense voxel (i, j, k) of box n is global voxel first[n] * B + (i, j, k)
    i, j, k = 5, 2, 1
    expected = ((torch.tensor([i, j, k]) + 50) * torch.tensor([10000, 100, 1])).sum().float()
    assert boxes["value"][0, 0, i, j, k] == expected
    assert (boxes["value"][0, 0, :, :, 4:] == -1.0).all()  # blocks (0, 0, 1) and (1, 0, 1) are absent: fill value
    assert (boxes["value"][1, 0, :4, :, :4] == -1.0).all() and (boxes["value"][1, 0, :4, :, 4:] > 0).all()
    per_block = grid.from_boxes(boxes["rgb"])
    assert torch.equal(grid.to_boxes(per_block, (2, 1, 2)), boxes["rgb"])


def test_allocation_bound_versions_and_removal():
    grid = grid_with_values()
    with pytest.raises(ValueError, match="max_blocks"):
        grid.allocate(torch.arange(24).view(8, 3) + 10)
    assert grid.num_blocks == 3  # nothing allocated by the refused call
    allocated = grid.version  # allocation is a change of content, not of observations
    assert allocated == 1 and grid.content_versions().tolist() == [1, 1, 1] and grid.block_versions().tolist() == [0] * 3
    slots = grid.slots[:2]
    grid.mark_changed(slots)
    assert grid.version == 2 and grid.block_versions(slots).tolist() == [2, 2]
    grid.mark_rewritten(grid.slots[2:])
    assert grid.block_versions().tolist() == [2, 2, 0] and grid.content_versions().tolist() == [2, 2, 3]
    assert grid.remove(torch.tensor([True, False, False])) == 1 and grid.num_blocks == 2
    assert grid.removal_version == grid.version == 4
    reused = grid.allocate(torch.tensor([[7, 7, 7]]))
    assert (grid.layer("value")[reused] == -1.0).all() and int(grid.block_versions(reused)[0]) == 0  # refilled
    assert int(grid.content_versions(reused)[0]) == 5


@pytest.mark.parametrize("layer_added_meanwhile", [False, True])
def test_a_prepared_growth_keeps_every_block_and_fills_new_slots(layer_added_meanwhile):
    grid = BlockGrid(block_size=4, max_blocks=100, device="cpu")
    grid.add_layer("value", (64,), -1.0)
    grid.add_layer("rgb", (64, 3), 0.5)
    blocks = torch.stack([torch.arange(54), torch.zeros(54, dtype=torch.int64), torch.zeros(54, dtype=torch.int64)], 1)
    slots = grid.allocate(blocks)  # 54 of 64 slots: not yet due
    grid.layer("value")[slots] = slots[:, None].float()
    assert not grid.growth_due()
    grid.allocate(blocks[:1] + torch.tensor([[0, 1, 0]]))  # 55 of 64 (86 %)
    assert grid.growth_due()
    grid.prepare_growth()
    assert not grid.growth_due() and grid.capacity == 64  # prepared, not grown yet
    if layer_added_meanwhile:  # the prepared pools no longer fit: the growth makes its own
        grid.add_layer("extra", (64,), 7.0)
    more = grid.allocate(torch.stack([torch.arange(30), torch.full((30,), 2), torch.zeros(30, dtype=torch.int64)], 1))
    assert grid.capacity == 100 and grid.num_blocks == 85  # 64 doubled, bounded by max_blocks
    assert torch.equal(grid.layer("value")[slots], slots[:, None].float().expand(-1, 64))
    assert (grid.layer("value")[more] == -1.0).all() and (grid.layer("rgb")[more] == 0.5).all()
    assert torch.equal(grid.lookup(blocks), slots)
    if layer_added_meanwhile:
        assert (grid.layer("extra")[more] == 7.0).all()
    assert not grid.growth_due()  # at max_blocks: nothing to prepare

"""Sprites and frame composition."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atlasrl.envserver.envs.render import BACKGROUND, FROZENLAKE_SPRITES, SOKOBAN_SPRITES, GridRenderer, sprite_atlas


@pytest.mark.parametrize("sprites", [FROZENLAKE_SPRITES, SOKOBAN_SPRITES], ids=["frozenlake", "sokoban"])
@pytest.mark.parametrize("tile", [8, 21, 32, 64])
def test_every_tile_kind_has_a_distinct_sprite(sprites, tile):
    atlas = sprite_atlas(sprites, tile)
    assert atlas.shape == (len(sprites), tile, tile, 3) and atlas.dtype == np.uint8
    flat = atlas.reshape(len(sprites), -1).astype(np.int32)
    for i in range(len(sprites)):
        for j in range(i + 1, len(sprites)):
            assert np.abs(flat[i] - flat[j]).mean() > 2.0, (i, j)


def test_atlas_is_drawn_once_per_tile_size_and_read_only():
    assert sprite_atlas(SOKOBAN_SPRITES, 16) is sprite_atlas(SOKOBAN_SPRITES, 16)
    with pytest.raises(ValueError):
        sprite_atlas(SOKOBAN_SPRITES, 16)[0, 0, 0, 0] = 1


def test_frame_places_each_tile_in_its_cell():
    renderer = GridRenderer(FROZENLAKE_SPRITES, 4, 4, 128)
    codes = np.arange(16).reshape(4, 4) % len(FROZENLAKE_SPRITES)
    frame = renderer.frame(codes)
    assert frame.shape == (128, 128, 3) and frame.dtype == np.uint8
    for r in range(4):
        for c in range(4):
            assert np.array_equal(frame[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32], renderer.atlas[codes[r, c]])


def test_grid_that_does_not_divide_the_image_is_centred_on_background():
    renderer = GridRenderer(SOKOBAN_SPRITES, 6, 6, 128)              # tile 21 px, grid 126 px
    frame = renderer.frame(np.ones((6, 6), dtype=np.int64))
    assert frame.shape == (128, 128, 3) and renderer.tile == 21
    assert (frame[0] == BACKGROUND).all() and (frame[-1] == BACKGROUND).all()
    assert (frame[:, 0] == BACKGROUND).all() and (frame[:, -1] == BACKGROUND).all()
    assert np.array_equal(frame[1:22, 1:22], renderer.atlas[1])


def test_frames_are_independent_arrays():
    renderer = GridRenderer(SOKOBAN_SPRITES, 6, 6, 128)
    a = renderer.frame(np.ones((6, 6), dtype=np.int64))
    b = renderer.frame(np.zeros((6, 6), dtype=np.int64))
    assert not np.shares_memory(a, b) and not np.array_equal(a, b)


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 9), cols=st.integers(1, 9), image_size=st.integers(40, 160),
       seed=st.integers(0, 2**32 - 1), changes=st.lists(st.integers(0, 81), min_size=1, max_size=8))
def test_incremental_frames_equal_full_composition(rows, cols, image_size, seed, changes):
    rng = np.random.default_rng(seed)
    incremental = GridRenderer(SOKOBAN_SPRITES, rows, cols, image_size)
    full = GridRenderer(SOKOBAN_SPRITES, rows, cols, image_size, incremental=False)
    codes = rng.integers(len(SOKOBAN_SPRITES), size=(rows, cols))
    for n_changed in changes:                     # few changed tiles (a step) or many (a new level)
        for _ in range(n_changed):
            codes[rng.integers(rows), rng.integers(cols)] = rng.integers(len(SOKOBAN_SPRITES))
        assert np.array_equal(incremental.frame(codes), full.frame(codes))

"""Configs of the grid games, parsed from the wire's ``map<string, string>``.

    cfg = parse_config(FrozenLakeConfig, {"size": "8", "slippery": "true"})
    cfg.as_strings()  # every key with its resolved value, for EnvSpec.config

Unknown keys and bad values raise EnvConfigError naming the key and value.

Pixel-only play: ``text_mode=none`` keeps the map out of the text (the frame is
the only view of the state) and ``cell_px=28`` renders each cell as exactly one
merged image token of Qwen2.5-VL (14-px patches, 2x2 merge), e.g. FrozenLake
4x4 at 112x112 px = 16 tokens.
"""
from __future__ import annotations

from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from atlasrl.envserver.base import EnvConfigError

MIN_TILE_PIXELS = 4
MAX_IMAGE_SIZE = 1024


class GridConfig(BaseModel):
    """Keys shared by every grid game."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    size: int = Field(4, ge=2, le=16)
    """Grid side length in cells (square grids)."""
    image_size: int = Field(128, ge=16, le=MAX_IMAGE_SIZE)
    """Side of the rendered RGB frame in pixels; tiles are image_size // size, padded to exact size."""
    cell_px: int | None = Field(None, ge=MIN_TILE_PIXELS, le=256)
    """Pixels per grid cell: the frame is exactly size * cell_px wide (image_size follows; giving both, they
    must agree). 28 makes each cell one merged image token of Qwen2.5-VL (14-px patches, 2x2 merge)."""
    max_actions_per_turn: int = Field(3, ge=1, le=16)
    """How many actions one action text may hold ("Left, Up" is two)."""
    max_steps: int | None = Field(None, ge=1, le=100_000)
    """Primitive actions (an invalid turn counts one) before the episode is truncated; default by size."""
    view: Literal["full", "egocentric"] = "full"
    """What the frame shows. "full": the whole map. "egocentric": a square window of the map centred on the agent,
    view_radius cells to each side, cells beyond the map edge drawn as void; the agent is always the centre cell,
    so what lies next to it is always at the same place in the frame (MiniGrid's partial views)."""
    view_radius: int | None = Field(None, ge=1, le=15)
    """With view=egocentric: cells shown on each side of the agent (the frame is 2 * view_radius + 1 cells wide);
    default size - 1, the whole map from any cell."""
    position_marks: bool = False
    """Draw a thin border around every cell of the frame whose colour says where the cell is (red grows with the
    row, green with the column). For vision models that know an image token's place only through rotary
    positions (Qwen2.5-VL), so that a random-weights one can tell which neighbour it sees (render.py says why)."""
    text_mode: Literal["grid", "relative", "none"] = "grid"
    """"grid": the map as characters with a legend; "relative": what lies around the agent and where the goals are;
    "none": no map at all, only the task in one line (pixel-only play: the state is in the image alone)."""
    render: bool = True
    """Render the RGB frame of every observation. false: observations carry no image, for text-only policies
    (an actor with use_image off never reads them): rendering, zstd and the bytes of a frame were most of the
    env server's work per step (docs/results/2026-12-06-throughput-async.md). Needs a text_mode other than none."""
    outcome_text: bool = False
    """Start the observation text with what the last turn's actions did ("You moved down.", "You bumped into
    a wall."); any text_mode, meant for text_mode=none. The text is part of GiGPO's state key, so with outcomes
    one cell reached by different moves makes different step groups."""
    success_reward: float = Field(1.0, ge=-1e6, le=1e6)
    """Reward of the action that solves the level."""
    step_penalty: float = Field(0.0, ge=-1e6, le=1e6)
    """Reward added for every primitive action (use a negative value to penalise length)."""
    invalid_penalty: float = Field(-0.1, ge=-1e6, le=1e6)
    """Reward added (on top of step_penalty) for a turn whose text does not parse."""

    @model_validator(mode="after")
    def _tiles_visible(self):
        if not self.render and self.text_mode == "none":
            raise ValueError("render=false with text_mode=none leaves the observation without the state")
        if self.view_radius is not None and self.view != "egocentric":
            raise ValueError(f"view_radius={self.view_radius} needs view=egocentric (view={self.view} shows the "
                             "whole map)")
        cells, across = self.view_cells(), self._cells_named()
        if self.cell_px is not None:
            side = cells * self.cell_px
            if "image_size" in self.model_fields_set and self.image_size != side:
                raise ValueError(f"image_size={self.image_size} contradicts cell_px={self.cell_px} with {across} "
                                 f"(cell_px * {cells} = {side}); give only one of them")
            if side > MAX_IMAGE_SIZE:
                raise ValueError(f"cell_px={self.cell_px} with {across} makes a {side} px frame, over the "
                                 f"{MAX_IMAGE_SIZE} px limit of image_size")
            self.__dict__["image_size"] = side     # frozen model: the derived value is set once, here
        if self.image_size // cells < MIN_TILE_PIXELS:
            raise ValueError(
                f"image_size={self.image_size} leaves tiles under {MIN_TILE_PIXELS} px for {across}")
        return self

    def _cells_named(self) -> str:
        """The keys that set the frame's cells across, for error messages."""
        if self.view == "full":
            return f"size={self.size}"
        return f"view={self.view}, view_radius={self.view_cells() // 2} ({self.view_cells()} cells across)"

    def view_cells(self) -> int:
        """Cells across the frame: the map's side, or the egocentric window's."""
        if self.view == "full":
            return self.size
        return 2 * (self.view_radius if self.view_radius is not None else self.size - 1) + 1

    def resolved_max_steps(self) -> int:
        return self.max_steps if self.max_steps is not None else self.default_max_steps()

    def default_max_steps(self) -> int:
        return 10 * self.size

    def as_strings(self) -> dict[str, str]:
        values = self.model_dump()
        values["max_steps"] = self.resolved_max_steps()
        if self.view == "egocentric":
            values["view_radius"] = self.view_cells() // 2
        return {key: _to_string(value) for key, value in values.items()}


class FrozenLakeConfig(GridConfig):
    """FrozenLake: walk from the top-left corner to the goal in the bottom-right without falling in a hole."""

    hole_prob: float = Field(0.2, ge=0.0, le=0.6)
    """Chance that a cell other than start and goal is a hole (maps are redrawn until solvable)."""
    slippery: bool = False
    """Gymnasium's slippery ice: the intended move with p=1/3, each perpendicular move with p=1/3."""
    hole_penalty: float = Field(0.0, ge=-1e6, le=1e6)
    """Reward of the action that falls into a hole."""
    hidden_holes: bool = False
    """Holes look exactly like ice in the frame and the text (and are left out of the observation's entities);
    stepping in one still ends the episode with terminal cause "hole"."""
    oracle_holes: bool = False
    """With hidden_holes: keep the holes in the observation's entities (never in its text or frame), so that an
    oracle arm of a memory ablation (actor.memory_source=oracle) reads the true map; the policy's prompt never
    shows entities."""
    layout_pool: int = Field(0, ge=0, le=1_000_000)
    """K > 0: every map is one of K recurring layouts, layout (seed mod K) of the pool (see layout_pool_seed);
    0: a fresh map per seed."""
    layout_pool_seed: int = Field(0, ge=0, le=2**63 - 1)
    """Which pool of layouts: layout k is drawn from a generator seeded with (layout_pool_seed, k), so another
    value gives K other layouts (held-out evaluation). Needs layout_pool > 0 when not 0."""

    @model_validator(mode="after")
    def _pool_seed_needs_pool(self):
        if self.oracle_holes and not self.hidden_holes:
            raise ValueError("oracle_holes has no effect without hidden_holes (visible holes are entities anyway)")
        if self.layout_pool_seed and not self.layout_pool:
            raise ValueError(f"layout_pool_seed={self.layout_pool_seed} has no effect without layout_pool "
                             f"(a number of layouts > 0)")
        return self

    def default_max_steps(self) -> int:
        return 5 * self.size


class SokobanConfig(GridConfig):
    """Sokoban: push every box onto a target."""

    size: int = Field(6, ge=5, le=12)
    """Room side length in cells, outer walls included."""
    num_boxes: int = Field(1, ge=1, le=4)
    """Boxes (and targets) in the room."""
    box_on_target_reward: float = Field(0.0, ge=-1e6, le=1e6)
    """Shaping: reward for pushing a box onto a target (and its negative for pushing one off)."""
    deadlock_ends_episode: bool = True
    """End the episode as a failure when a box is stuck in a corner that is not a target."""
    deadlock_penalty: float = Field(0.0, ge=-1e6, le=1e6)
    """Reward of the action that creates a deadlock (when deadlock_ends_episode)."""

    @model_validator(mode="after")
    def _room_fits_boxes(self):
        capacity = max(1, (self.size - 2) ** 2 // 5)
        if self.num_boxes > capacity:
            raise ValueError(f"num_boxes={self.num_boxes} does not fit a {self.size}x{self.size} room "
                             f"(at most {capacity})")
        return self

    def default_max_steps(self) -> int:
        return 5 * self.size + 20 * self.num_boxes


ConfigT = TypeVar("ConfigT", bound=GridConfig)


def parse_config(model: type[ConfigT], raw: dict[str, str]) -> ConfigT:
    """Validate wire config strings into ``model``; EnvConfigError names the key and value."""
    for key, value in raw.items():
        if not isinstance(value, str):
            raise EnvConfigError(f"config key '{key}': value must be a string, got {type(value).__name__}")
    try:
        return model.model_validate({key: _from_string(key, value) for key, value in raw.items()})
    except ValidationError as exc:
        raise EnvConfigError(_describe(model, raw, exc)) from None


_OPTIONAL_KEYS = ("max_steps", "cell_px", "view_radius")


def _from_string(key: str, value: str):
    # "none"/"" for max_steps means "default by size" (cell_px: "unset, image_size rules"; view_radius: the whole
    # map); pydantic parses the rest ("8", "0.2", "true").
    if key in _OPTIONAL_KEYS and value.strip().lower() in ("", "none", "default"):
        return None
    return value.strip()


def _describe(model: type[GridConfig], raw: dict[str, str], exc: ValidationError) -> str:
    error = exc.errors()[0]
    key = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "extra_forbidden":
        return f"unknown config key '{key}'; valid keys: {', '.join(model.model_fields)}"
    message = error["msg"].removeprefix("Value error, ")
    if key:
        return f"config key '{key}'={raw.get(key, '')!r} is invalid: {message}"
    return f"invalid config: {message}"


def _to_string(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    return str(value)

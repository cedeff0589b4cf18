"""Chat prompts for one env turn: system prompt, instruction, a window of past turns, memory hints.

    builder = PromptBuilder(spec, action_mode="choice", context_turns=1, context_images=1)
    prompt = builder.build(history, current_obs_text, frame, hints)
    prompt.messages   # HF chat messages; image placeholders are {"type": "image"}
    prompt.images     # wire tensors (atlasrl.codec) of uint8 HxWx3 frames, in placeholder order

Prompts are short on purpose: on a CPU every prompt token costs generation time,
and a tiny model learns faster from a compact, regular prompt. The instruction
(from the EnvSpec) is stated once in the system message; each turn shows the
text observation (and the frame when images are on); earlier turns keep their
text and lose their frames first (``context_images`` counts the current one).
``bare=True`` leaves the system message empty (kept, so chat templates do not
insert a default one): for models trained from random weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from atlasrl.v1 import env_pb2, tensor_pb2

CHOICE_SYSTEM = "You control the agent. Reply with one action."
FREE_SYSTEM = (
    "You control the agent. Think briefly inside <think></think>, then give the action inside "
    "<answer></answer>, e.g. <think>goal is right</think><answer>{example}</answer>."
)


@dataclass
class PastTurn:
    """What the model saw and said on an earlier turn of the episode."""

    observation: str
    frame: tensor_pb2.Tensor | None
    response: str


@dataclass
class MemoryHints:
    """The memory's view of the current state, for this turn's prompt (atlasrl/actors/memory_view.py)."""

    skills: list[str] = field(default_factory=list)
    # images as wire tensors, like the env's frames in a prompt (the engine decodes them; the episode keeps them)
    overlay: tensor_pb2.Tensor | None = None
    blend: bool = False   # the overlay replaces the current frame instead of joining the prompt as its own image
    exemplars: list[tuple[tensor_pb2.Tensor, str]] = field(default_factory=list)   # (frame, caption), most similar first


@dataclass
class Prompt:
    messages: list[dict]
    images: list[tensor_pb2.Tensor]


class PromptBuilder:
    def __init__(
        self,
        spec: env_pb2.EnvSpec,
        *,
        action_mode: str = "choice",
        context_turns: int = 1,
        context_images: int = 1,
        use_image: bool = True,
        system_prompt: str = "",
        bare: bool = False,
        frame_after_text: bool = False,
    ):
        self.spec = spec
        self.frame_after_text = frame_after_text
        self.action_mode = action_mode
        self.context_turns = context_turns
        self.context_images = context_images if use_image else 0
        self.use_image = use_image
        self.system = "" if bare else self._system_text(system_prompt)

    def _system_text(self, override: str) -> str:
        if override:
            base = override
        elif self.action_mode == "free":
            example = self.spec.valid_actions[0] if self.spec.valid_actions else "..."
            base = FREE_SYSTEM.format(example=example)
            if self.spec.valid_actions:
                base += " Actions: " + ", ".join(self.spec.valid_actions) + "."
            elif self.spec.action_format:
                base += " Format: " + self.spec.action_format
        else:
            base = CHOICE_SYSTEM
        instruction = self.spec.instruction.strip()
        return f"{base}\n{instruction}" if instruction else base

    def build(
        self,
        history: list[PastTurn],
        observation: str,
        frame: tensor_pb2.Tensor | None,
        hints: MemoryHints | None = None,
    ) -> Prompt:
        kept = history[-self.context_turns:] if self.context_turns else []
        # Frames budget: the current frame first, then the most recent past turns.
        frames_left = max(0, self.context_images - (1 if frame is not None and self.use_image else 0))
        with_frame = set()
        for i in range(len(kept) - 1, -1, -1):
            if frames_left and kept[i].frame is not None:
                with_frame.add(i)
                frames_left -= 1
        messages: list[dict] = [{"role": "system", "content": self.system}]
        images: list[tensor_pb2.Tensor] = []
        for i, turn in enumerate(kept):
            frame_i = turn.frame if i in with_frame else None
            messages.append({"role": "user", "content": self._content(turn.observation, frame_i, None, images)})
            messages.append({"role": "assistant", "content": turn.response})
        cur_frame = frame if self.use_image else None
        messages.append({"role": "user", "content": self._content(observation, cur_frame, hints, images)})
        return Prompt(messages=messages, images=images)

    def _content(self, text: str, frame, hints: MemoryHints | None, images: list) -> str | list[dict]:
        parts: list[dict] = []
        if hints is not None and self.use_image:
            for image, caption in hints.exemplars:
                parts += [{"type": "text", "text": f"Remembered: {caption}"}, {"type": "image"}]
                images.append(image)
            if hints.overlay is not None and hints.blend:
                frame = hints.overlay   # the tinted frame (or, from an env that sends none, the maps alone)
            elif hints.overlay is not None:
                parts += [{"type": "text", "text": "Memory map (red=danger, green=good):"}, {"type": "image"}]
                images.append(hints.overlay)
        if hints is not None and hints.skills:
            text = "Memory: " + " ".join(hints.skills) + "\n" + text
        if frame is None and not parts:
            return text  # plain string: text-only chat templates handle it, and it is shortest
        text_part = {"type": "text", "text": text}
        if frame is None:
            return parts + [text_part]
        images.append(frame)
        return parts + ([text_part, {"type": "image"}] if self.frame_after_text else [{"type": "image"}, text_part])

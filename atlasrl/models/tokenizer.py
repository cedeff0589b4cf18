"""A Qwen-style byte-level BPE tokenizer trained locally in ~1 s.

    tok = build_tokenizer(vocab_size=2048)            # PreTrainedTokenizerFast
    tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)

No files are downloaded: the training corpus is generated here (deterministic
text about grid games, the answer format and the action words), so the same
arguments give the same tokenizer on every machine. Qwen's special tokens and
chat template are added so prompts look exactly like a real Qwen2.5-VL's.
"""
from __future__ import annotations

import random

# Qwen2/Qwen2.5-VL special tokens, in the order Qwen assigns their ids.
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
    "<tool_call>", "</tool_call>",
]
ACTION_WORDS = ["Up", "Down", "Left", "Right"]

# Qwen2-VL's chat template: images become <|vision_start|><|image_pad|><|vision_end|>,
# which the processor expands to one <|image_pad|> per merged vision patch.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_WORDS = (  # noqa: SIM905 - a word list reads better as one string
    "the a an of to in on at is are was be you your agent player box goal target hole ice wall floor "
    "grid cell row column step steps move moves action actions valid invalid reward done success "
    "push pull pick place cube peg sphere robot arm gripper open close reach lift stack observation "
    "image frame map left right up down north south east west next turn think answer plan first then "
    "avoid reach must can cannot should will not if when where which what that this it its and or "
    "with without from into onto by for as until all each one two three four five six seven eight "
    "nine zero position current previous history skill memory hint overlay instruction system "
    "assistant user task environment game sokoban frozenlake maniskill puzzle solve solved fail "
    "failed deadlock timeout slippery lake safe danger path shortest best good bad try again "
    "frozen edge blocked pushed"
).split()
# Words of the envs' text observations: each must be one token (tiny models read them by position).
OBSERVATION_WORDS = ["frozen", "edge", "hole", "goal", "wall", "floor", "target", "box", "blocked"]


def corpus_lines(seed: int = 0, n_lines: int = 6000) -> list[str]:
    """Deterministic training text: sentences, grid renderings and answers."""
    rng = random.Random(seed)
    lines = []
    for i in range(n_lines):
        kind = i % 4
        if kind == 0 and i % 8 == 0:
            lines.append("\n".join(f"{a}: {rng.choice(OBSERVATION_WORDS)}" for a in ACTION_WORDS))
        elif kind == 0:
            words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 16))]
            lines.append(" ".join(words).capitalize() + rng.choice([".", "?", "!", ":"]))
        elif kind == 1:
            acts = [rng.choice(ACTION_WORDS) for _ in range(rng.randint(1, 3))]
            lines.append(f"<think>The {rng.choice(_WORDS)} is {rng.choice(_WORDS)}, so I move "
                         f"{acts[0]}.</think><answer>{', '.join(acts)}</answer>")
        elif kind == 2:
            rows = ["".join(rng.choice("#_.PBOGH") for _ in range(6)) for _ in range(rng.randint(3, 6))]
            lines.append("\n".join(rows))
        else:
            acts = rng.sample(ACTION_WORDS, 4)
            lines.append(f"Valid actions: {', '.join(acts)}. Answer with {acts[0]} or {acts[1]}. "
                         f"Step {rng.randint(0, 99)}: {acts[2]} {acts[3]}")
    return lines


def build_tokenizer(vocab_size: int = 2048, seed: int = 0):
    """Train the BPE and wrap it as a ``PreTrainedTokenizerFast`` (Qwen conventions)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    bpe.train_from_iterator(corpus_lines(seed), trainer=trainer)
    bpe.add_special_tokens(SPECIAL_TOKENS)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
        chat_template=CHAT_TEMPLATE,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                              "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"},
    )
    check_single_token_actions(tok)
    return tok


def check_single_token_actions(tok) -> None:
    """Choice mode and tiny models rely on each action word (and observation word) being one token."""
    texts = [t for w in ACTION_WORDS for t in (w, " " + w)] + [" " + w for w in OBSERVATION_WORDS]
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"word {text!r} is {len(ids)} tokens ({ids}); enlarge the vocab")

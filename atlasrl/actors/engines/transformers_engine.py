"""The CPU default engine: batched sampling with a KV cache on a transformers model.

Prompts are left-padded into one batch, prefilled once, then decoded one token
per step for all rows (KV cache, explicit positions from
atlasrl.models.positions so padding never shifts a token's position, M-RoPE for
Qwen-VL). Each step: tempered logits -> choice mask (choice rows) ->
log-softmax (the log-prob returned) -> top-p -> sample. See base.py for the
log-prob contract.

Two savings that change no distribution: equal prompts (a GRPO group's episodes
on one state) are prefilled once and their cache copied per row, each row then
sampling on its own; and once every unfinished choice row has a single way left
to complete its choice (an action's tail, the end token), those tokens are
appended with log-prob 0 (the only allowed token) without another forward.

Interruptible generation (``weight_swap="interrupt"``): ``stage_weights`` hands
over a new version at any time. Idle, the engine loads it at once; generating,
it loads it between two decode steps, recomputes the KV cache of every row's
prompt and tokens so far with the new weights (a cache of the old weights
would mix two policies in one forward), and goes on. Each token records the
version that produced it (``Generation.token_versions``), so a turn may span
versions and its behaviour log-probs stay exact per token. ``update_weights``
is the drain path: it waits for the generate call in flight.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from atlasrl.actors.engines.base import Engine, Generation, GenerationRequest, SamplingParams, StagedWeights
from atlasrl.actors.engines.config import EngineConfig
from atlasrl.actors.engines.sampling import mask_to_allowed, sample_tokens
from atlasrl.models.chat import EncodedPrompt, encode_prompt
from atlasrl.models.choice import ChoiceTrie, choice_token_ids
from atlasrl.models.load import load_policy
from atlasrl.models.logprobs import banned_response_ids, effective_temperature, shared_rows
from atlasrl.models.names import to_module_name
from atlasrl.models.positions import next_positions, prompt_positions

CHOICE_CACHE = 1024   # distinct choice lists whose tries are kept (an env's actions: a handful)


@dataclass
class _Row:
    prompt: EncodedPrompt
    trie: ChoiceTrie | None
    budget: int                                  # max response tokens
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)   # weight version that produced each token
    finish: str | None = None


def _prompt_key(prompt: EncodedPrompt) -> tuple:
    pixels = b"" if prompt.pixel_values is None else prompt.pixel_values.detach().cpu().numpy().tobytes()
    return tuple(prompt.input_ids), hashlib.blake2b(pixels, digest_size=16).digest()


class TransformersEngine(StagedWeights, Engine):
    def __init__(self, config: EngineConfig):
        self.config = config
        if config.threads:
            torch.set_num_threads(config.threads)
        self.policy = load_policy(config.model, dtype=config.dtype, device=config.device)
        self.tokenizer = self.policy.tokenizer
        self._version = 0
        self._lock = threading.Lock()
        self._generator = torch.Generator(device=config.device).manual_seed(config.seed)
        self._end_id = self.policy.eos_token_ids[0]
        self._tries: dict[tuple[str, ...], ChoiceTrie] = {}   # choice lists seen, see _choice_trie
        self._init_staging()                             # staged versions: [(param, tensor)] each
        self.stats = {"generated_tokens": 0, "prefill_tokens": 0, "seconds": 0.0, "decode_steps": 0,
                      "interrupts": 0}

    @property
    def version(self) -> int:
        return self._version

    def reseed(self, seed: int) -> None:
        """Restart the sampling RNG: the same requests then sample the same tokens again (benches that compare
        two loops on identical work, bench/rollout_throughput.py)."""
        with self._lock:
            self._generator.manual_seed(seed)

    # -- generation ------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest], params: SamplingParams) -> list[Generation]:
        rows = [self._prepare(r, params) for r in requests]   # validates before any compute
        with self._lock:
            try:
                with torch.inference_mode():
                    self._load_pending()          # staged while no call was running to load it
                    gen = self._generator
                    if params.seed is not None:
                        gen = torch.Generator(device=self.config.device).manual_seed(params.seed)
                    t0 = time.perf_counter()
                    for i in range(0, len(rows), self.config.max_batch_size):
                        self._run_batch(rows[i:i + self.config.max_batch_size], params, gen)
                    self.stats["seconds"] += time.perf_counter() - t0
            finally:
                self._load_pending()
        self._load_if_idle()   # staged between our last check and the release: nobody else would load it
        return [self._result(req, row, params) for req, row in zip(requests, rows)]

    def _prepare(self, req: GenerationRequest, params: SamplingParams) -> _Row:
        prompt = encode_prompt(self.policy, req.messages, list(req.images))
        trie = self._choice_trie(tuple(req.choices)) if req.choices is not None else None
        return _Row(prompt=prompt, trie=trie, budget=trie.max_len if trie else params.max_tokens)

    def _choice_trie(self, choices: tuple[str, ...]) -> ChoiceTrie:
        """The trie of a choice list, built once: an env offers the same few actions on every turn, and tokenising
        them per request was ~4 % of a tiny model's generate call (a ChoiceTrie is read-only once built)."""
        trie = self._tries.get(choices)
        if trie is None:
            trie = ChoiceTrie(choice_token_ids(self.tokenizer, list(choices), self._end_id))   # raises on bad ones
            if len(self._tries) >= CHOICE_CACHE:
                self._tries.pop(next(iter(self._tries)))                # the oldest entry
            self._tries[choices] = trie
        return trie

    def _forward(self, **kw):
        out = self.policy.model(**kw)
        if self.config.sim_step_s:   # benches on CPU hosts: the accelerator's time for this pass (config doc)
            time.sleep(self.config.sim_step_s)
        return out

    def _prefill(self, rows: list[_Row]):
        """One forward over every row's prompt and tokens so far: (next-token logits, cache, mask, last positions),
        one cache row per row. Rows with equal prompts and tokens are computed once."""
        policy, device = self.policy, self.config.device
        row_map, firsts = shared_rows([(*_prompt_key(r.prompt), tuple(r.tokens)) for r in rows])
        unique = [rows[i] for i in firsts]
        seqs = [list(r.prompt.input_ids) + r.tokens for r in unique]
        S = max(len(q) for q in seqs)
        ids = torch.full((len(unique), S), policy.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(unique), S), dtype=torch.long)
        for b, q in enumerate(seqs):
            ids[b, S - len(q):] = torch.tensor(q)
            mask[b, S - len(q):] = 1
        vision = [r.prompt for r in unique if r.prompt.pixel_values is not None]
        grid = torch.cat([p.image_grid_thw for p in vision]) if vision else None
        pos = prompt_positions(ids, mask, policy.is_vl, policy.image_token_id, grid, policy.spatial_merge_size)
        kw = {}
        if vision:
            kw = dict(pixel_values=torch.cat([p.pixel_values for p in vision]).to(device),
                      image_grid_thw=grid.to(device))
        ids, mask, pos = ids.to(device), mask.to(device), pos.to(device)
        out = self._forward(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                            **kw)
        self.stats["prefill_tokens"] += int(mask.sum())
        logits, cache = out.logits, out.past_key_values
        if len(unique) < len(rows):                     # one cache row per request from here on
            index = torch.tensor(row_map, device=device)
            logits, mask, pos = logits.index_select(0, index), mask.index_select(0, index), pos.index_select(-2, index)
            cache.reorder_cache(index)
        return logits, cache, mask, pos[..., -1:]

    def _run_batch(self, rows: list[_Row], params: SamplingParams, gen: torch.Generator) -> None:
        device = self.config.device
        logits, cache, mask, last_pos = self._prefill(rows)
        temp = effective_temperature(params.temperature)
        banned = banned_response_ids(self.policy)   # never sampled; the learner masks the same ids
        budget = max(r.budget for r in rows)
        while True:
            scaled = logits[:, -1, :].float() / temp
            if banned:
                scaled[:, banned] = float("-inf")
            allowed = [r.trie.allowed(r.tokens) if r.trie and r.finish is None else None for r in rows]
            scaled = mask_to_allowed(scaled, allowed)
            tokens, logps = sample_tokens(scaled, params.temperature == 0, params.top_p, gen)
            for b, r in enumerate(rows):
                if r.finish is None:
                    r.tokens.append(int(tokens[b]))
                    r.logprobs.append(float(logps[b]))
                    r.versions.append(self._version)
                    r.finish = self._finished(r, params)
            budget -= 1
            if budget <= 0 or all(r.finish for r in rows) or self._complete_forced(rows):
                break
            self.stats["generated_tokens"] += sum(1 for r in rows if r.finish is None)
            self.stats["decode_steps"] += 1
            if self.config.weight_swap == "interrupt" and self._load_pending():
                # New weights between two decode steps: the cache holds the old weights' keys and values, so
                # recompute it over prompt + tokens so far; the next token is the new version's.
                self.stats["interrupts"] += 1
                logits, cache, mask, last_pos = self._prefill(rows)
                continue
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            last_pos = next_positions(last_pos)
            out = self._forward(input_ids=tokens.unsqueeze(-1).to(device), attention_mask=mask,
                                position_ids=last_pos, past_key_values=cache, use_cache=True)
            logits, cache = out.logits, out.past_key_values
        for r in rows:
            r.finish = r.finish or "length"

    def _complete_forced(self, rows: list[_Row]) -> bool:
        """Finish every unfinished row whose choice has one way left to complete; False (no change) otherwise."""
        open_rows = [r for r in rows if r.finish is None]
        tails = [r.trie.forced_tail(r.tokens) if r.trie is not None else None for r in open_rows]
        if any(t is None for t in tails):
            return False
        for r, tail in zip(open_rows, tails):
            r.tokens += tail
            r.logprobs += [0.0] * len(tail)            # the only allowed token: log 1
            r.versions += [self._version] * len(tail)
            self.stats["generated_tokens"] += len(tail)
            r.finish = "stop"
        return True

    def _finished(self, r: _Row, params: SamplingParams) -> str | None:
        if r.trie is not None:
            return "stop" if r.trie.index(r.tokens) is not None else None
        if r.tokens[-1] in self.policy.eos_token_ids:
            return "stop"
        if params.stop:
            text = self.tokenizer.decode(r.tokens, skip_special_tokens=True)
            if any(s in text for s in params.stop):
                return "stop"
        return "length" if len(r.tokens) >= r.budget else None

    def _result(self, req: GenerationRequest, r: _Row, params: SamplingParams) -> Generation:
        text = self.tokenizer.decode(r.tokens, skip_special_tokens=True)
        cut = [(text.find(s), s) for s in params.stop if s in text]
        if cut:
            at, stop = min(cut)
            text = text[:at + (len(stop) if params.include_stop_str_in_output else 0)]
        return Generation(
            prompt_ids=list(r.prompt.input_ids), token_ids=r.tokens, logprobs=r.logprobs, text=text,
            finish_reason=r.finish or "length", version=r.versions[0], temperature=params.temperature,
            token_versions=list(r.versions),
            choice_index=r.trie.index(r.tokens) if r.trie else None,
            choice_token_ids=[list(c) for c in r.trie.choices] if r.trie else None,
        )

    # -- weights ---------------------------------------------------------------------
    def update_weights(self, version: int, named_tensors: Iterable[tuple[str, object]]) -> None:
        staged = self._prepare_weights(named_tensors)
        with self._lock:
            self._apply_weights(version, staged)

    def _apply_weights(self, version: int, staged: list) -> None:
        with torch.no_grad():
            for target, tensor in staged:
                target.copy_(tensor.to(dtype=target.dtype, device=target.device))
        self._version = int(version)

    def _prepare_weights(self, named_tensors: Iterable[tuple[str, object]]) -> list:
        """[(parameter, tensor)] checked against the model: unknown names and wrong shapes raise ValueError."""
        params = dict(self.policy.model.named_parameters())
        params.update(dict(self.policy.model.named_buffers()))
        staged = []
        for name, tensor in named_tensors:
            target = params.get(to_module_name(name, self.policy.is_vl))
            if target is None and name == "lm_head.weight":
                continue                    # tied to the embeddings: nothing separate to load
            if target is None:
                raise ValueError(f"update_weights: unknown parameter {name!r}")
            tensor = torch.as_tensor(tensor)
            if tuple(tensor.shape) != tuple(target.shape):
                raise ValueError(f"update_weights: {name} has shape {tuple(tensor.shape)}, "
                                 f"expected {tuple(target.shape)}")
            staged.append((target, tensor))
        return staged

    def close(self) -> None:
        self.policy.model = None

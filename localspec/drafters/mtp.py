"""Drafting with the target's own multi-token-prediction (NextN) head(s).

An MTP head is one extra decoder block trained to predict the token after
next: at position p it reads the embedding of token t_p together with the
target's final hidden state h_{p-1} (the state that predicted t_p) and gives
logits for t_{p+1}. llama.cpp runs it in a second context over the same
weights (`LLAMA_CONTEXT_TYPE_MTP`) with a KV cache of its own, one layer deep.

That cache must hold, for every position the target has cached, the entry
built from (t_p, h_{p-1}). So the drafter listens to the target context: after
each target decode it feeds the same tokens with the target's hidden states
(shifted by one), and after each target truncation it truncates too. To draft
it then decodes the pending token with h of the last cached position, takes
the argmax, and feeds that token back with the head's own output state, k
times; the draft positions are dropped again afterwards.

A model with several chained heads (`nextn_predict_layers` > 1) uses head i
for draft position i: every head has its own layer in the cache, filled by
running the same rows once per head (`llama_set_nextn_layer_offset`), as
llama-cpp-python's server does.

Drafts are greedy (`probs=None`, a point mass): the verifier's rejection rule
stays exact for any proposal distribution, so sampling remains lossless.
"""

from __future__ import annotations

import ctypes
import time
from typing import Sequence

import numpy as np

import llama_cpp
from llama_cpp import llama_cpp_ext

from localspec.backend import Context
from localspec.drafters import EMPTY_DRAFT, Draft
from localspec.drafters.draft_model import top_probability
from localspec.errors import LocalspecError
from localspec.events import DraftWork
from localspec.verify import SamplingParams

HIDDEN_HISTORY = 256  # target hidden states kept: enough to re-feed after any rollback a step makes


class MtpDrafter:
    name = "mtp"

    def __init__(self, target: Context):
        model = target.model
        if model.n_layer_nextn <= 0:
            raise LocalspecError(f"{model.name} has no MTP (NextN) layers; --method mtp needs a model that ships them")
        # Our cache must mirror the target's from position 0, and the hidden states
        # of what it already holds are gone: start both empty.
        target.truncate(0)
        self.target = target
        self.n_heads = model.n_layer_nextn
        self.n_embd = model.n_embd
        self.n_vocab = model.n_vocab
        tp = target.params
        params = llama_cpp.llama_context_default_params()
        params.ctx_type = llama_cpp.LLAMA_CONTEXT_TYPE_MTP
        params.ctx_other = target.ptr
        params.n_seq_max = 1
        for name in ("n_ctx", "n_batch", "n_ubatch", "n_threads", "n_threads_batch", "type_k", "type_v", "flash_attn_type"):
            setattr(params, name, getattr(tp, name))
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model.ptr, params)
        if not ctx:
            raise LocalspecError(
                f"llama.cpp could not create an MTP context for {model.name} (was it loaded with its MTP layers?)"
            )
        self.ptr = ctx
        self.memory = llama_cpp.llama_get_memory(ctx)
        self.n_batch = target.n_batch
        # A batch that carries both token ids (for the head's embedding lookup) and
        # one hidden state per row: llama_batch_init allocates only one of the two.
        self._batch = llama_cpp.llama_batch_init(self.n_batch, self.n_embd, 1)
        self._tokens = (llama_cpp.llama_token * self.n_batch)()
        self._batch.token = self._tokens
        self._embd = np.ctypeslib.as_array(self._batch.embd, shape=(self.n_batch, self.n_embd))
        llama_cpp_ext.llama_set_embeddings_nextn(ctx, True, True)  # the head's own state, for chaining
        llama_cpp_ext.llama_set_embeddings_nextn(target.ptr, True, False)  # the target's, every row
        # A ring of the target's hidden states for positions [_known_from, _known_to).
        self._hidden = np.zeros((HIDDEN_HISTORY, self.n_embd), dtype=np.float32)
        self._known_from = self._known_to = 0
        self.n_cached = 0  # positions of the target cache mirrored in ours
        self.p_min = 0.0
        self.decode_s = 0.0  # seconds inside llama_decode, feeding and drafting
        target.listeners.append(self)

    # -- the mirror of the target cache -------------------------------------------------

    def _h(self, pos: int) -> np.ndarray:
        """The target's hidden state at `pos`; zeros where it is unknown (before
        the first token, or no longer kept). A wrong state only costs acceptance:
        every draft is verified."""
        if not self._known_from <= pos < self._known_to:
            return np.zeros(self.n_embd, dtype=np.float32)
        return self._hidden[pos % HIDDEN_HISTORY]

    def after_decode(self, tokens: Sequence[int], pos0: int) -> None:
        hidden = llama_cpp_ext.llama_get_embeddings_nextn(self.target.ptr)
        rows = np.ctypeslib.as_array(hidden, shape=(len(tokens), self.n_embd))
        if pos0 != self.n_cached:
            self._cut(pos0)
        previous = np.concatenate([self._h(pos0 - 1)[None], rows[:-1]])
        self._decode(tokens, previous, pos0, logits_last=False, heads=range(self.n_heads))
        self.n_cached = pos0 + len(tokens)
        if pos0 != self._known_to:  # a gap: what the ring held does not join up
            self._known_from = pos0
        kept = rows[-HIDDEN_HISTORY:]
        self._hidden[np.arange(self.n_cached - len(kept), self.n_cached) % HIDDEN_HISTORY] = kept
        self._known_to = self.n_cached
        self._known_from = max(self._known_from, self._known_to - HIDDEN_HISTORY)

    def after_truncate(self, n: int) -> None:
        self._cut(n)

    def _cut(self, n: int) -> None:
        llama_cpp.llama_memory_seq_rm(self.memory, 0, n, -1)
        self.n_cached = min(self.n_cached, n)
        self._known_to = min(self._known_to, n)
        self._known_from = min(self._known_from, self._known_to)

    def _decode(self, tokens: Sequence[int], hidden: np.ndarray, pos0: int, *, logits_last: bool, heads) -> None:
        """Run rows (token, hidden state) at pos0.. through the head(s); `hidden` is (len(tokens), n_embd)."""
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start : start + self.n_batch]
            b = self._batch
            for i, tok in enumerate(chunk):
                b.token[i] = tok
                b.pos[i] = pos0 + start + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = 0
                b.logits[i] = 0
            self._embd[: len(chunk)] = hidden[start : start + len(chunk)]
            if logits_last:
                b.logits[len(chunk) - 1] = 1
            b.n_tokens = len(chunk)
            for head in heads:
                if self.n_heads > 1:
                    # Each head writes its own layer of the shared cells: clear the
                    # cells, then let this head fill them again.
                    llama_cpp.llama_memory_seq_rm(self.memory, 0, pos0 + start, -1)
                    llama_cpp_ext.llama_set_nextn_layer_offset(self.ptr, head)
                t = time.perf_counter()
                rc = llama_cpp.llama_decode(self.ptr, b)
                self.decode_s += time.perf_counter() - t
                if rc != 0:
                    raise RuntimeError(f"MTP decode failed with code {rc}")
        if self.n_heads > 1:
            llama_cpp_ext.llama_set_nextn_layer_offset(self.ptr, 0)

    # -- drafting -----------------------------------------------------------------------

    def propose(
        self,
        context: Sequence[int],
        k: int,
        sampling: SamplingParams,
        rng: np.random.Generator,
        stop_below: float = 0.0,
    ) -> Draft:
        n_past = len(context) - 1  # the target cache holds context[:-1]
        if k <= 0 or self.n_cached != n_past:
            return EMPTY_DRAFT
        if self.n_heads > 1:
            k = min(k, self.n_heads)
        t0 = time.perf_counter()
        chain_tokens = [context[-1]]
        chain_hidden = [self._h(n_past - 1).copy()]
        tokens: list[int] = []
        cum_p = 1.0
        n_decodes = 0
        try:
            while len(tokens) < k:
                if self.n_heads > 1:
                    # Head i reads the whole chain so far through its own layer.
                    head = len(tokens)
                    self._decode(chain_tokens, np.stack(chain_hidden), n_past, logits_last=True, heads=[head])
                else:
                    self._decode(
                        chain_tokens[-1:], chain_hidden[-1][None], n_past + len(tokens), logits_last=True, heads=[0]
                    )
                n_decodes += 1
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ptr, -1), shape=(self.n_vocab,))
                p_top = top_probability(logits)
                cum_p *= p_top
                if p_top < self.p_min or cum_p < stop_below:
                    break
                tok = int(logits.argmax())
                tokens.append(tok)
                state = llama_cpp_ext.llama_get_embeddings_nextn_ith(self.ptr, -1)
                chain_tokens.append(tok)
                chain_hidden.append(np.ctypeslib.as_array(state, shape=(self.n_embd,)).copy())
        finally:
            # Draft positions never stay: the verify batch feeds the real ones.
            llama_cpp.llama_memory_seq_rm(self.memory, 0, n_past, -1)
        work = DraftWork(singles=(n_decodes, time.perf_counter() - t0))
        return Draft(tokens=tokens, source=self.name, ran=True, work=work)

    def behind(self, context: Sequence[int]) -> int:
        return 0  # its cache is fed along with the target's

    def observe(self, context: Sequence[int], n_accepted: int) -> None:
        pass  # the cache follows the target's through the listener calls

    def close(self) -> None:
        if self in self.target.listeners:
            self.target.listeners.remove(self)
        if self.ptr:
            if self.target.ptr:
                llama_cpp_ext.llama_set_embeddings_nextn(self.target.ptr, False, False)
            self._batch.token = ctypes.POINTER(llama_cpp.llama_token)()
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self.ptr)
            self.ptr = None

    def __del__(self) -> None:
        self.close()

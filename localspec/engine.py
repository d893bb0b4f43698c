"""The engine a front end talks to: models loaded, drafters ready, settings live.

`method` and `draft_max` are plain attributes read before every verify step,
so a UI thread may change them while a reply streams.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import jinja2
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from localspec import calibrate
from localspec.backend import Context, Model, default_threads
from localspec.drafters import Drafter
from localspec.drafters.combined import FirstOfDrafter
from localspec.drafters.draft_model import DraftModelDrafter
from localspec.drafters.lookup import LookupDrafter, quoted_forms
from localspec.drafters.mtp import MtpDrafter
from localspec.errors import LocalspecError
from localspec.controller import K_MAX, Planner, PlannerSettings, draft_lengths, lookup_cap
from localspec.costs import CostModel
from localspec.generate import GenerateOptions, Generation
from localspec.host import memory_info
from localspec.registry import DEFAULT_DRAFT_MAX, DEFAULT_P_MIN
from localspec.remote import RemoteContext
from localspec.rpc import RpcSettings, TargetSpec

Progress = Callable[[str, float], None]



@dataclass(frozen=True)
class ModelSettings:
    """How to run one model: where it is and how llama.cpp should hold it."""

    path: Path
    name: str
    n_ctx: int = 4096
    n_gpu_layers: int = 0
    chat_template: str | None = None
    mtp_layers: int = 0  # NextN heads in the file (`<arch>.nextn_predict_layers`)
    rpc: RpcSettings | None = None  # the target's layers on rpc-servers (localspec/rpc.py)


def _setting(name: str) -> property:
    return property(lambda self: getattr(self.settings, name), lambda self, v: setattr(self.settings, name, v))


class Engine:
    def __init__(
        self,
        target: Model,
        target_ctx: Context,
        *,
        target_name: str,
        draft_ctx: Context | None = None,
        draft_name: str | None = None,
        mtp: MtpDrafter | None = None,
        method: str | None = None,
        draft_max: int = DEFAULT_DRAFT_MAX,
        p_min: float = DEFAULT_P_MIN,
        chat_template: str | None = None,
        costs: CostModel | None = None,
        calibration_keys: dict[str, str] | None = None,
    ):
        self.target = target
        self.target_ctx = target_ctx
        self.target_name = target_name
        self.draft_name = draft_name
        self.lookup = LookupDrafter()
        self._drafters: dict[str, Drafter] = {"lookup": self.lookup}
        self.draft_model = DraftModelDrafter(draft_ctx, p_min=p_min) if draft_ctx is not None else None
        self.mtp = mtp
        if self.draft_model:
            self._drafters["draft"] = self.draft_model
            self._drafters["draft+lookup"] = FirstOfDrafter("draft+lookup", [self.lookup, self.draft_model])
        if mtp:
            self._drafters["mtp"] = mtp
        self.methods: tuple[str, ...] = ("auto", *self._drafters, "none")
        self.settings = PlannerSettings(method=method or self.methods[0], draft_max=draft_max)
        if self.method not in self.methods:
            hint = {
                "draft": "; --method draft needs --draft",
                "draft+lookup": "; --method draft+lookup needs --draft",
                "mtp": f"; --method mtp needs a target with MTP heads, and {target_name} has none",
            }.get(self.method, "")
            raise LocalspecError(f"method {self.method!r} is not available here (have: {', '.join(self.methods)}){hint}")
        self.planner = Planner(self.settings, self._drafters, self.lookup, costs or CostModel())
        self.auto_limit = self.auto_ceiling
        self._calibration_keys = calibration_keys
        self.warnings: list[str] = []
        self._template = chat_template or target.chat_template()

    # What the user chose lives in the planner's settings; a UI sets these between steps.
    method = _setting("method")
    draft_max = _setting("draft_max")
    auto_draft = _setting("auto_draft")  # a fixed method, the planner picks k (0 included)
    auto_limit = _setting("auto_limit")  # the most the planner may draft when it picks k

    @property
    def auto_ceiling(self) -> int:
        """The longest draft the planner can choose on this machine (lookup_cap: the longest measured verify size less one)."""
        return lookup_cap(self.planner.costs)

    @property
    def auto_limits(self) -> list[int]:
        """The limits a UI steps through under auto: 0 and every draft length the planner may choose."""
        return [0, *draft_lengths(self.planner.costs, self.auto_ceiling)]

    @property
    def p_min(self) -> float:
        return self.draft_model.p_min if self.draft_model else 0.0

    @p_min.setter
    def p_min(self, value: float) -> None:
        if self.draft_model:
            self.draft_model.p_min = value

    @property
    def plain_tokens_per_s(self) -> float | None:
        """What plain decoding (`--method none`) does here on the latest reply's
        tokens, at their context lengths, counting the loop's own per-step
        work: from this session's steps, the quick end of them, so a busy UI
        does not lower it (costs.PlainReference). None before the first step:
        the calibration alone times bare decodes and would overstate it."""
        return self.planner.costs.plain.tokens_per_s

    @property
    def chat_template(self) -> str | None:
        return self._template

    def single_tokens(self, markers: Sequence[str]) -> frozenset[int]:
        """The target's ids of the markers that are one token each (Model.single_tokens)."""
        return self.target.single_tokens(markers)

    def render_chat(
        self, messages: list[dict], tools: list[dict] | None = None, template_kwargs: dict | None = None
    ) -> str:
        """`messages` (and OpenAI-style `tools`, for a template that takes them)
        in the chat template; `template_kwargs`: its other variables (enable_thinking, ...)."""
        if not self._template:
            raise LocalspecError(f"{self.target_name} has no chat template; use --raw or set chat_template in models.toml")
        try:
            # (Inside: the formatter compiles the template, which may not parse.)
            formatter = Jinja2ChatFormatter(
                template=self._template,
                eos_token=self.target.token_text(self.target.eos),
                bos_token=self.target.token_text(self.target.bos),
                add_generation_prompt=True,
            )
            return formatter(messages=messages, tools=tools, **(template_kwargs or {})).prompt
        except (jinja2.TemplateError, ValueError, TypeError) as e:
            # raise_exception() in a template is a ValueError: its words are for the user.
            raise LocalspecError(f"the chat template of {self.target_name} cannot render these messages: {e}") from None

    @property
    def n_ctx(self) -> int:
        return self.target_ctx.n_ctx

    def chat_tokens(self, messages: list[dict], continuation: str = "", rendered: str | None = None) -> list[int]:
        """The prompt of a chat turn: `messages` in the chat template, ready for
        the assistant (`rendered`: as render_chat already gave them); with
        `continuation`, that much of its reply already written."""
        prompt = self.render_chat(messages) if rendered is None else rendered
        tokens = self.target.tokenize(prompt, add_special=True, parse_special=True)
        if continuation:
            tokens += self.target.tokenize(continuation, add_special=False, parse_special=False)
        return tokens

    def chat(
        self,
        messages: list[dict],
        options: GenerateOptions,
        cancel: threading.Event | None = None,
        *,
        continuation: str = "",
        cut: int = 0,
        rendered: str | None = None,
    ) -> Generation:
        """A reply to `messages` (`rendered`: as render_chat gave them, with its
        tools and template variables); with `continuation`, the rest of a reply
        that far written, less its first `cut` tokens (when it alone fills the context)."""
        tokens = self.chat_tokens(messages, rendered=rendered)
        if continuation:
            more = self.target.tokenize(continuation, add_special=False, parse_special=False)
            tokens += more[cut:]
        quoted: list[list[int]] = []
        if options.grammar:
            # A constrained reply is JSON (a tool call, a response_format): what it
            # copies from the prompt it writes escaped, which lookup finds only so.
            quoted = [
                self.target.tokenize(text, add_special=False, parse_special=False)
                for text in quoted_forms(_texts(messages))
            ]
        return self.generate(tokens, options, cancel, quoted=quoted)

    def complete(
        self,
        prompt: str,
        options: GenerateOptions,
        cancel: threading.Event | None = None,
        *,
        parse_special: bool = False,
    ) -> Generation:
        return self.generate(self.target.tokenize(prompt, add_special=True, parse_special=parse_special), options, cancel)

    def generate(
        self,
        tokens: list[int],
        options: GenerateOptions,
        cancel: threading.Event | None = None,
        quoted: Sequence[Sequence[int]] = (),
    ) -> Generation:
        """A generation continuing `tokens`; `quoted`: token sequences the reply
        may copy that the prompt does not hold as tokens (LookupDrafter.quote)."""
        if not tokens:
            raise LocalspecError("the prompt is empty")
        if len(tokens) >= self.target_ctx.n_ctx:
            raise LocalspecError(
                f"the prompt is {len(tokens)} tokens but the context holds {self.target_ctx.n_ctx}; raise n_ctx"
            )
        if isinstance(self.target_ctx, RemoteContext):
            self.target_ctx.ensure_alive()  # a remote lost in an earlier reply: back, or RemoteLost again
        self.lookup.quote(quoted)
        base = [self.lookup] + ([self.draft_model] if self.draft_model else [])
        return Generation(self.target_ctx, tokens, self.planner, options, cancel, drafters=base)

    def round_trips(self) -> dict[str, float] | None:
        """Seconds of one request-reply to each rpc-server now, on the
        connections decodes use (None: the target is local, or its servers
        do not answer). Every verify step waits on at least one of these."""
        if not isinstance(self.target_ctx, RemoteContext):
            return None
        try:
            return self.target_ctx.ping()
        except (LocalspecError, RuntimeError):
            return None

    def learned(self) -> dict:
        """What the engine has learned from the text it met: the planner's
        estimates and the renames lookup carries, not the machine's costs.
        `restore_learned` puts it back (the benchmark runs one text several
        times, and no run may learn from another)."""
        return {"planner": self.planner.estimates(), "lookup": self.lookup.learned()}

    def restore_learned(self, learned: dict) -> None:
        self.planner.restore(learned["planner"])
        self.lookup.restore(learned["lookup"])

    def close(self) -> None:
        if self._calibration_keys:
            c = self.planner.costs
            calibrate.remember(
                self._calibration_keys,
                {n: c.verify(n) for n in c.verify_s},  # seconds now: the level times the curve's shape
                {name: m.value for name, m in c.draft_token_s.items()},
            )
            self._calibration_keys = None
        if self.draft_model:
            self.draft_model.close()
            self.draft_model.ctx.model.close()
        if self.mtp:
            self.mtp.close()
        self.target_ctx.close()
        self.target.close()


def open_engine(
    target: ModelSettings,
    draft: ModelSettings | None = None,
    *,
    method: str | None = None,
    draft_max: int = DEFAULT_DRAFT_MAX,
    p_min: float = DEFAULT_P_MIN,
    n_threads: int | None = None,
    flash_attn: bool | None = None,
    progress: Progress | None = None,
    calibrate_costs: bool = True,
) -> Engine:
    """Load models already on disk (vocabulary compatibility checked before)."""
    report = progress or (lambda stage, frac: None)
    report(f"load {target.name}", 0.0)
    tctx: Context | RemoteContext
    if target.rpc:
        # Here only the vocabulary; the weights and the cache live in the RPC worker.
        tmodel = Model(target.path, vocab_only=True)
        spec = TargetSpec(str(target.path), target.n_ctx, 512, n_threads, target.n_gpu_layers, flash_attn, False, K_MAX)
        tctx = RemoteContext(tmodel, spec, target.rpc, lambda f: report(f"load {target.name}", f))
    else:
        # MTP layers are loaded whenever the file has them: auto may draft with them.
        tmodel = Model(target.path, n_gpu_layers=target.n_gpu_layers, load_mtp=target.mtp_layers > 0)
        tctx = Context(tmodel, n_ctx=target.n_ctx, n_threads=n_threads, flash_attn=flash_attn, rollback=K_MAX)
    report(f"load {target.name}", 1.0)
    dctx = None
    if draft is not None:
        report(f"load {draft.name}", 0.0)
        dmodel = Model(draft.path, n_gpu_layers=draft.n_gpu_layers)
        dctx = Context(dmodel, n_ctx=target.n_ctx, n_threads=n_threads, flash_attn=flash_attn, rollback=K_MAX)
        report(f"load {draft.name}", 1.0)
    # The MTP head reads the target's hidden states, which stay in the RPC worker.
    mtp = MtpDrafter(tctx) if tmodel.n_layer_nextn > 0 and isinstance(tctx, Context) else None
    costs = CostModel()
    keys = None
    if calibrate_costs:
        report("calibrate", 0.0)
        keys = calibrate.keys_for(
            tctx,
            dctx,
            n_threads or default_threads(),
            (target.n_gpu_layers, draft.n_gpu_layers if draft else 0),
            mtp=mtp is not None,
            rpc=target.rpc,
        )
        m = calibrate.measure(tctx, dctx, keys, mtp)
        costs.seed(m["verify_s"], m["draft_token_s"], m.get("draft_batch_s"))
        report("calibrate", 1.0)
    return Engine(
        tmodel,
        tctx,
        costs=costs,
        calibration_keys=keys,
        target_name=target.name,
        draft_ctx=dctx,
        draft_name=draft.name if draft else None,
        mtp=mtp,
        method=method,
        draft_max=draft_max,
        p_min=p_min,
        chat_template=target.chat_template,
    )


DRAFT_MODEL_METHODS = ("draft", "draft+lookup")
# A verify batch (up to K_MAX + 1 rows) and calibration's short prefix must fit.
MIN_N_CTX = 32


def load_engine(
    target: str | None = None,
    draft: str | None = None,
    *,
    pair: str | None = None,
    method: str | None = None,
    draft_max: int | str | None = None,
    p_min: float | None = None,
    n_ctx: int | None = None,
    n_gpu_layers: int | None = None,
    n_gpu_layers_draft: int | None = None,
    n_threads: int | None = None,
    flash_attn: bool | None = None,
    rpc: str | Sequence[str] | None = None,
    tensor_split: str | None = None,
    rpc_timeout: float | None = None,
    progress: Progress | None = None,
) -> Engine:
    """Resolve names or paths, fetch what is missing, check, load.

    With neither `target` nor `pair`, the default pair of models.toml is used;
    explicit arguments win over the pair's settings.
    """
    from localspec import registry
    from localspec.resolve import ensure_local, resolve_model
    from localspec.gguf_info import read_gguf_info
    from localspec.vocab import check_compatible
    from localspec.rpc import DEFAULT_TIMEOUT as DEFAULT_RPC_TIMEOUT, parse_endpoints, parse_tensor_split, probe

    reg = registry.load_registry()
    if pair is not None or target is None:
        p = registry.resolve_pair(pair, reg)
        target = target or p.target
        draft = draft if draft is not None else p.draft
        method = method or p.method
        draft_max = p.draft_max if draft_max is None else draft_max
        p_min = p.p_min if p_min is None else p_min
        rpc = p.rpc if rpc is None else rpc
    if method in DRAFT_MODEL_METHODS and draft is None:
        raise LocalspecError(f"--method {method} needs a draft model: give --draft NAME_OR_PATH")
    method = method or "auto"
    auto_draft = draft_max == "auto"
    if auto_draft:
        draft_max = None

    def settings(name_or_path: str, ngl: int | None):
        spec = resolve_model(name_or_path, reg)
        path = spec.path
        if path is None:
            if progress:
                progress(f"fetch {spec.name}", 0.0)
            path = ensure_local(spec, progress=progress is None)
        info = read_gguf_info(path)
        ms = ModelSettings(
            path=path,
            name=spec.name,
            n_ctx=n_ctx or spec.n_ctx,
            n_gpu_layers=spec.n_gpu_layers if ngl is None else ngl,
            chat_template=spec.chat_template,
            mtp_layers=info.nextn_predict_layers,
        )
        return ms, info

    rpc_settings = None
    if rpc:
        rpc_settings = RpcSettings(
            parse_endpoints(rpc),
            parse_tensor_split(tensor_split) if tensor_split else (),
            DEFAULT_RPC_TIMEOUT if rpc_timeout is None else rpc_timeout,
        )
        probe(rpc_settings.endpoints)  # before any fetch or load: a server that is not there is one line
        # Every layer goes to the devices (the servers, and local GPUs) unless --ngl says otherwise.
        n_gpu_layers = -1 if n_gpu_layers is None else n_gpu_layers
    elif tensor_split:
        raise LocalspecError("--tensor-split needs --rpc (it splits the target over the RPC devices)")
    tset, tinfo = settings(target, n_gpu_layers)
    if rpc_settings:
        tset = replace(tset, rpc=rpc_settings)
    if tset.n_ctx < MIN_N_CTX:
        raise LocalspecError(f"a context of {tset.n_ctx} tokens is too small: n_ctx must be at least {MIN_N_CTX}")
    dset = dinfo = None
    if draft is not None:
        dset, dinfo = settings(draft, n_gpu_layers_draft)
        check_compatible(tinfo.vocab, dinfo.vocab, tset.path, dset.path)
    # A remote target's weights and cache are not in this machine's memory.
    check_memory(tset.n_ctx, ([] if rpc_settings else [tinfo]) + ([dinfo] if dinfo else []))
    engine = open_engine(
        tset,
        dset,
        method=method,
        draft_max=DEFAULT_DRAFT_MAX if draft_max is None else draft_max,
        p_min=DEFAULT_P_MIN if p_min is None else p_min,
        n_threads=n_threads,
        flash_attn=flash_attn,
        progress=progress,
    )
    engine.auto_draft = auto_draft
    engine.warnings = setup_warnings(tset, tinfo, dset, dinfo)
    return engine


def check_memory(n_ctx: int, infos: list) -> None:
    """Refuse a context whose KV caches cannot fit in memory: llama.cpp would
    fail to allocate them, or the kernel's OOM killer would end the process."""
    mem = memory_info()
    per_token = [i.kv_bytes_per_token() for i in infos]
    if mem is None or None in per_token:
        return
    need = sum(i.file_size for i in infos) + n_ctx * sum(per_token)
    if need > mem["MemTotal"]:
        gib = 2**30
        raise LocalspecError(
            f"n_ctx {n_ctx} needs about {need / gib:.1f} GiB for weights and KV cache, "
            f"more than this machine's {mem['MemTotal'] / gib:.1f} GiB; lower --n-ctx"
        )


def setup_warnings(tset: ModelSettings, tinfo, dset: ModelSettings | None, dinfo) -> list[str]:
    """Set-ups that work but waste the user's time, said once at load."""
    import llama_cpp

    out = []
    if tinfo.context_length and tset.n_ctx > tinfo.context_length:
        out.append(
            f"n_ctx {tset.n_ctx} is larger than the {tinfo.context_length} tokens {tset.name} was trained for; "
            "quality drops past that"
        )
    if dinfo is not None and dset is not None:
        if dinfo.file_size > tinfo.file_size / 2:
            out.append(
                f"draft {dset.name} is more than half the size of target {tset.name}: "
                "its drafts cost about as much as they save; auto will mostly not use it"
            )
        if llama_cpp.llama_supports_gpu_offload() and tset.n_gpu_layers != 0 and dset.n_gpu_layers == 0:
            out.append(f"target {tset.name} is on the GPU but draft {dset.name} on the CPU (--ngl-draft 0)")
    return out


def _texts(messages: Sequence[dict]) -> list[str]:
    """The text of each message's content (a string, or OpenAI's list of parts)."""
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out += [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return out

"""The shared language-model trainer: one loop for every study, CPU smoke and GPU full alike.

Why one trainer: every study trains small LMs; a single loop with AdamW, cosine-with-warmup,
clipping, mixed precision on GPU, gradient accumulation and checkpoint/resume means a fix or a
speed-up lands everywhere, and `smoke` exercises exactly the code `full` runs.

Why batches are a pure function of (seed, step): after a kill -9, the resumed run draws exactly
the batches the uninterrupted run would have drawn, so the final metrics are identical.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from typing import TYPE_CHECKING

from harness.settings import EarlyStopConfig, TrainSettings  # noqa: F401 - re-exported: they lived here

if TYPE_CHECKING:  # numpy is imported where it runs: planning a spec (compile) never needs it
    import numpy as np

CKPT_NAME = "last.pt"


@dataclass
class TrainResult:
    steps: int
    tokens_seen: int
    train_loss: float
    dev_loss: float
    dev_ppl: float
    best_dev_ppl: float
    stopped_early: bool
    stop_reason: str
    wall_s: float
    tokens_per_s: float
    resumed_from_step: int
    history: list[dict[str, float]] = field(default_factory=list)

    def metrics(self) -> dict[str, Any]:
        """The deterministic part: no wall-clock numbers, so metrics files stay reproducible."""
        return {
            "steps": self.steps,
            "tokens_seen": self.tokens_seen,
            "train_loss": self.train_loss,
            "dev_loss": self.dev_loss,
            "dev_ppl": self.dev_ppl,
            "best_dev_ppl": self.best_dev_ppl,
            "stopped_early": self.stopped_early,
        }


def batch_starts(seed: int, step: int, n_tokens: int, batch_size: int, seq_len: int) -> np.ndarray:
    """Start offsets of the windows of one step, a pure function of (seed, step)."""
    import numpy as np

    rng = np.random.default_rng([seed, step])
    return rng.integers(0, n_tokens - seq_len - 1, size=batch_size)


def make_batch(ids: np.ndarray, starts: np.ndarray, seq_len: int):
    import torch

    import numpy as np

    idx = starts[:, None] + np.arange(seq_len + 1)[None, :]
    window = torch.from_numpy(ids[idx].astype(np.int64))
    return window[:, :-1], window[:, 1:]


def logits_of(output: Any):
    return output.logits if hasattr(output, "logits") else output


def lm_loss(model, inputs, targets):
    import torch.nn.functional as F

    logits = logits_of(model(inputs))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def default_optimizer(model, cfg: TrainSettings):
    """AdamW; no weight decay on biases and norm gains (1-D tensors), as is standard."""
    import torch

    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))


def cosine_lambda(cfg: TrainSettings) -> Callable[[int], float]:
    """Linear warmup to 1, then cosine decay to ``min_lr_ratio`` at ``steps``."""

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(1, cfg.steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def evaluate(model, ids: np.ndarray, cfg: TrainSettings, device: str, n_batches: int | None = None) -> float:
    """Mean next-token loss over fixed, non-overlapping dev windows (same windows every call)."""
    import torch

    n_batches = n_batches or cfg.eval_batches
    n_windows = max(1, min(n_batches * cfg.batch_size, (len(ids) - 1) // cfg.seq_len))
    import numpy as np

    starts = np.arange(n_windows) * cfg.seq_len
    micro = cfg.micro_batch_size or cfg.batch_size
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, n_windows, micro):
            x, y = make_batch(ids, starts[i : i + micro], cfg.seq_len)
            with _autocast(device, cfg):
                loss = lm_loss(model, x.to(device), y.to(device))
            total += float(loss) * len(x)
            count += len(x)
    model.train(was_training)
    return total / count


def _autocast(device: str, cfg: TrainSettings):
    import contextlib

    import torch

    if device != "cuda" or cfg.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if cfg.precision == "fp16" else torch.bfloat16
    return torch.autocast("cuda", dtype=dtype)


def _save_checkpoint(path: Path, state: dict) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a kill mid-save leaves the previous checkpoint intact


def train_lm(
    model,
    train_ids: np.ndarray,
    dev_ids: np.ndarray | None,
    cfg: TrainSettings,
    *,
    ckpt_dir: Path | None = None,
    optimizer_factory: Callable[[Any, TrainSettings], Any] | None = None,
    early_stop: EarlyStopConfig | None = None,
    log: Callable[[str], None] = print,
    stop_requested: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train ``model`` on windows of ``train_ids``; resume from ``ckpt_dir`` when a checkpoint exists."""
    import torch

    from harness.runtime import device as pick_device

    from harness.runtime import set_threads

    set_threads(cfg.threads)
    device = pick_device(cfg.device)
    if stop_requested is None:
        from harness.runtime import stop_requested as _stop

        stop_requested = _stop
    torch.manual_seed(cfg.seed)
    model.to(device)
    model.train()
    optimizer = (optimizer_factory or default_optimizer)(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_lambda(cfg))
    scaler = torch.amp.GradScaler("cuda", enabled=(device == "cuda" and cfg.precision == "fp16"))
    dev = dev_ids if dev_ids is not None and len(dev_ids) > cfg.seq_len + 1 else None

    step, history, state = 0, [], {}
    best_ppl, worse_since_tokens = math.inf, None
    ckpt_path = Path(ckpt_dir) / CKPT_NAME if ckpt_dir else None
    if ckpt_path:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)
    if ckpt_path and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, history = state["step"], state["history"]
        best_ppl, worse_since_tokens = state["best_ppl"], state["worse_since_tokens"]
        log(f"resumed from checkpoint at step {step}/{cfg.steps}")
    resumed_from = step
    tokens_per_step = cfg.batch_size * cfg.seq_len
    micro = cfg.micro_batch_size or cfg.batch_size
    # A run that died after its last checkpoint but before writing its outputs resumes with no
    # step left to run: its loss and early-stop verdict come from the checkpoint, never NaN.
    stopped, reason = bool(state.get("stopped", False)), str(state.get("stop_reason", ""))
    train_loss = history[-1]["train_loss"] if history else math.nan
    t0 = time.perf_counter()
    last_log = t0

    def checkpoint() -> None:
        if ckpt_path:
            _save_checkpoint(ckpt_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "step": step, "history": history,
                "best_ppl": best_ppl, "worse_since_tokens": worse_since_tokens,
                "stopped": stopped, "stop_reason": reason,
            })

    while step < cfg.steps and not stopped:
        starts = batch_starts(cfg.seed, step, len(train_ids), cfg.batch_size, cfg.seq_len)
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for i in range(0, cfg.batch_size, micro):
            x, y = make_batch(train_ids, starts[i : i + micro], cfg.seq_len)
            with _autocast(device, cfg):
                loss = lm_loss(model, x.to(device), y.to(device)) / cfg.grad_accum
            scaler.scale(loss).backward()
            step_loss += float(loss.detach())
        if cfg.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        train_loss = step_loss
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training loss became {train_loss} at step {step}; lower the lr")
        record: dict[str, float] = {"step": step, "tokens": step * tokens_per_step, "train_loss": train_loss,
                                    "lr": scheduler.get_last_lr()[0]}
        if dev is not None and cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps:
            dev_loss = evaluate(model, dev, cfg, device)
            record["dev_loss"] = dev_loss
            ppl = math.exp(min(dev_loss, 50))
            if early_stop:
                if ppl < best_ppl:
                    best_ppl, worse_since_tokens = ppl, None
                elif ppl >= best_ppl + early_stop.delta_ppl:
                    worse_since_tokens = worse_since_tokens if worse_since_tokens is not None else record["tokens"]
                    if record["tokens"] - worse_since_tokens >= early_stop.window_tokens:
                        stopped, reason = True, (f"dev ppl {ppl:.3f} >= best {best_ppl:.3f} + {early_stop.delta_ppl}"
                                                 f" for {record['tokens'] - worse_since_tokens} tokens")
                else:
                    worse_since_tokens = None
        history.append(record)
        now = time.perf_counter()
        if now - last_log > 5 or step == cfg.steps:
            log(f"step {step}/{cfg.steps} loss {train_loss:.4f} lr {record['lr']:.2e}"
                + (f" dev {record['dev_loss']:.4f}" if "dev_loss" in record else ""))
            last_log = now
        if step % cfg.checkpoint_every == 0 or stopped:
            checkpoint()
        if stopped:
            log(f"early stop at step {step}: {reason}")
            break
        if stop_requested():
            checkpoint()
            raise InterruptedError(f"stop requested at step {step}; checkpoint saved for resume")

    wall = time.perf_counter() - t0
    dev_loss = evaluate(model, dev, cfg, device) if dev is not None else math.nan
    dev_ppl = math.exp(min(dev_loss, 50)) if dev is not None else math.nan
    best_ppl = min(best_ppl, dev_ppl) if dev is not None else math.nan
    done_tokens = (step - resumed_from) * tokens_per_step
    return TrainResult(
        steps=step, tokens_seen=step * tokens_per_step, train_loss=train_loss, dev_loss=dev_loss,
        dev_ppl=dev_ppl, best_dev_ppl=best_ppl, stopped_early=stopped, stop_reason=reason, wall_s=wall,
        tokens_per_s=done_tokens / wall if wall > 0 else 0.0, resumed_from_step=resumed_from, history=history,
    )


def clear_checkpoint(ckpt_dir: Path | None) -> None:
    """Drop the checkpoint once the stage's outputs are written: a finished stage never resumes."""
    import shutil

    if ckpt_dir:
        shutil.rmtree(ckpt_dir, ignore_errors=True)


def lr_range_test(model, train_ids: np.ndarray, cfg: TrainSettings, lr_min: float, lr_max: float,
                  steps: int) -> list[dict[str, float]]:
    """Leslie Smith's LR range test: exponentially increase the LR, record the loss at each step."""
    import torch

    from harness.runtime import device as pick_device

    device = pick_device(cfg.device)
    model.to(device).train()
    optimizer = default_optimizer(model, cfg.model_copy(update={"lr": lr_min}))
    out = []
    for step in range(steps):
        lr = lr_min * (lr_max / lr_min) ** (step / max(1, steps - 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        x, y = make_batch(train_ids, batch_starts(cfg.seed, step, len(train_ids), cfg.batch_size, cfg.seq_len),
                          cfg.seq_len)
        optimizer.zero_grad(set_to_none=True)
        loss = lm_loss(model, x.to(device), y.to(device))
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        value = float(loss)
        out.append({"lr": lr, "loss": value})
        if not math.isfinite(value) or (len(out) > 5 and value > 4 * min(o["loss"] for o in out)):
            break  # diverged: the rest of the sweep carries no information
    return out


def overfit_one_batch(model, train_ids: np.ndarray, cfg: TrainSettings, steps: int) -> list[float]:
    """Train repeatedly on a single batch; a healthy model/loss/optimizer drives the loss near zero."""
    from harness.runtime import device as pick_device

    device = pick_device(cfg.device)
    model.to(device).train()
    optimizer = default_optimizer(model, cfg.model_copy(update={"weight_decay": 0.0}))
    x, y = make_batch(train_ids, batch_starts(cfg.seed, 0, len(train_ids), cfg.batch_size, cfg.seq_len), cfg.seq_len)
    x, y = x.to(device), y.to(device)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = lm_loss(model, x, y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses

"""``torch.compile`` for the train step and the evaluation forward (``RunConfig.compile``).

An epoch of these models is a few hundred small kernels: on a GPU its time is spent launching
them, on a CPU partly in Python and in unfused element-wise passes. ``compile_step`` hands a
function to ``torch.compile``: Inductor fuses the element-wise work, and on CUDA
``mode="reduce-overhead"`` records the compiled kernels as CUDA graphs (static input buffers,
one launch per graph, no host synchronisation inside the step). The trainer compiles

- the loss of a minibatch (fused forward and cross-entropy; AOTAutograd compiles its backward);
- the AdamW update, when the learning rate is constant and the weights are float32
  (``compiles_update``): a warm-up or cool-down changes the lr, a Python float, every step, and
  each new value would compile again; and the compiled AdamW forms its bias corrections from the
  float32 step counter, which is float32 rounding (1e-7), below a float32 weight's own but not a
  float64 one's. Those runs update eagerly;
- the evaluation's forward (``compile_evaluation``).

Gradient filters (Grokfast, perp-Grad) run eagerly between the backward and the update. The
compiled step computes the same function; Inductor may order float operations differently, so
results agree with the eager step to rounding (tests compare them in float64).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TypeVar

import torch

from grokinterp.config import RunConfig

__all__ = ["compile_evaluation", "compile_mode", "compile_options", "compile_step", "compiles_update"]

F = TypeVar("F", bound=Callable)


def compile_mode(device: torch.device) -> str:
    """``"reduce-overhead"`` (CUDA graphs) on CUDA, else Inductor's ``"default"``."""
    return "reduce-overhead" if device.type == "cuda" else "default"


def compile_options(device: torch.device) -> dict:
    """The ``torch.compile`` arguments for ``device``: ``mode`` (``compile_mode``), or, on a CPU
    whose ATen kernels were held to the plain C++ build (``ATEN_CPU_CAPABILITY=default``),
    Inductor options that turn its vectorised C++ off (``cpp.simdlen`` 1): its vector code needs
    the SIMD headers that setting leaves out, and fails to compile."""
    if device.type == "cpu" and os.environ.get("ATEN_CPU_CAPABILITY", "").lower() == "default":
        return {"options": {"cpp.simdlen": 1}}
    return {"mode": compile_mode(device)}


def compile_step(fn: F, device: torch.device, *, dynamic: bool = False) -> F:
    """``torch.compile(fn)`` for ``device`` (``compile_options``), graph breaks allowed (the
    compiled optimizer step has some). Shapes are static (a run has at most two minibatch sizes)
    unless ``dynamic`` (an ensemble, whose model axis shrinks as members stop)."""
    return torch.compile(fn, dynamic=dynamic, **compile_options(device))  # type: ignore[return-value]


def compile_evaluation(fn: F, device: torch.device, *, dynamic: bool = False) -> F:
    """``compile_step(fn)`` for an evaluation forward called chunk after chunk. Under CUDA graphs
    (``compile_mode`` "reduce-overhead") a graph's outputs live in its static buffers, and the next
    chunk's replay overwrites them while the caller still holds them to concatenate (PyTorch
    raises where it notices): there each output is cloned out of the graph's memory, a copy of the
    logits only. Elsewhere the compiled function is returned as it is."""
    compiled = compile_step(fn, device, dynamic=dynamic)
    if compile_mode(device) != "reduce-overhead":
        return compiled

    @functools.wraps(fn)
    def cloned(*args, **kwargs):
        return compiled(*args, **kwargs).clone()

    return cloned  # type: ignore[return-value]


def compiles_update(cfg: RunConfig) -> bool:
    """Whether ``cfg.compile`` also compiles the AdamW update: a constant learning rate (no
    warm-up, no cool-down) and float32 weights (module docstring)."""
    return cfg.compile and not (cfg.warmup_steps or cfg.cooldown_steps) and cfg.dtype == "float32"

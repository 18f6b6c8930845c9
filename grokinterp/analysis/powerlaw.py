"""Power-law statistics of a sweep: ``grokking_epoch = A * train_frac ** -b``.

- ``fit_power_law(fracs, epochs)``: least squares in log-log, with t intervals and an optional
  bootstrap over the runs at each fraction (seeds);
- ``fit_sweep(df)``: the fit over a sweep's results table (``results.csv``), the content of the
  sweep's ``fit.json``.

scipy gives the t quantiles when it is installed; without it the normal approximation is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

__all__ = ["FitOn", "fit_power_law", "fit_sweep", "ols"]

FitOn = Literal["epoch", "step"]


def _t_quantile(q: float, df: int) -> float:
    try:
        from scipy import stats

        return float(stats.t.ppf(q, df))
    except ImportError:  # normal approximation
        from statistics import NormalDist

        return NormalDist().inv_cdf(q)


def ols(x, z) -> tuple[float, float, float, float, float]:
    """Slope, intercept, their standard errors and R^2 of the least-squares line z ~ x (numpy
    arrays; NaN standard errors with fewer than three points)."""
    import numpy as np

    n = len(x)
    xm, zm = x.mean(), z.mean()
    sxx = float(((x - xm) ** 2).sum())
    slope = float(((x - xm) * (z - zm)).sum() / sxx)
    intercept = float(zm - slope * xm)
    resid = z - (intercept + slope * x)
    sse = float((resid**2).sum())
    sst = float(((z - zm) ** 2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else 1.0
    if n > 2:
        s2 = sse / (n - 2)
        se_slope = math.sqrt(s2 / sxx)
        se_intercept = math.sqrt(s2 * (1.0 / n + xm**2 / sxx))
    else:
        se_slope = se_intercept = math.nan
    return slope, intercept, se_slope, se_intercept, float(np.clip(r2, -np.inf, 1.0))


def fit_power_law(
    fracs: Sequence[float],
    epochs: Sequence[float | None],
    *,
    aggregate: Literal["median", "none"] = "median",
    confidence: float = 0.95,
    bootstrap: int = 0,
    seed: int = 0,
    name: str = "grokking_epoch",
) -> dict[str, Any]:
    """Fit ``epochs = A * fracs ** -b`` by least squares on ``log epochs = log A - b log f``.

    Runs that did not grok (None/NaN/non-positive epochs) are dropped. With ``aggregate="median"``
    the points are the median epoch of the runs at each fraction (seeds), else every run is a point.
    Returns ``A``, ``b``, ``r2`` (in log-log), ``A_ci`` and ``b_ci`` (``confidence`` intervals from
    the standard errors with a t distribution; NaN with fewer than three points), ``n`` (points) and
    ``n_runs``. ``bootstrap=B`` adds ``bootstrap_A_ci``/``bootstrap_b_ci``: percentile intervals from
    resampling the runs within each fraction (seeds) B times.
    """
    import numpy as np

    f = np.asarray(fracs, dtype=float)
    y = np.asarray([np.nan if e is None else e for e in epochs], dtype=float)
    if f.shape != y.shape or f.ndim != 1:
        raise ValueError("fracs and epochs must be 1-D sequences of the same length")
    keep = np.isfinite(f) & np.isfinite(y) & (f > 0) & (y > 0)
    f, y = f[keep], y[keep]
    if aggregate not in ("median", "none"):
        raise ValueError(f"aggregate must be 'median' or 'none' (got {aggregate!r})")
    groups = {float(u): y[f == u] for u in np.unique(f)}
    if aggregate == "median":
        px = np.array(list(groups))
        py = np.array([np.median(v) for v in groups.values()])
    else:
        px, py = f, y
    if len(np.unique(px)) < 2:
        raise ValueError("a power-law fit needs grokked runs at two or more train fractions")
    x, z = np.log(px), np.log(py)
    n = len(x)
    slope, intercept, se_slope, se_intercept, r2 = ols(x, z)
    tq = _t_quantile(0.5 + confidence / 2, n - 2) if n > 2 else math.nan
    b, log_a = -slope, intercept
    out: dict[str, Any] = {
        "A": float(math.exp(log_a)),
        "b": float(b),
        "r2": r2,
        "A_ci": [float(math.exp(log_a - tq * se_intercept)), float(math.exp(log_a + tq * se_intercept))],
        "b_ci": [float(b - tq * se_slope), float(b + tq * se_slope)],
        "se_b": se_slope,
        "se_log_A": se_intercept,
        "confidence": confidence,
        "n": n,
        "n_runs": len(y),
        "aggregate": aggregate,
        "points": {"train_frac": px.tolist(), name: py.tolist()},
    }
    if bootstrap and any(len(v) > 1 for v in groups.values()):
        out.update(_bootstrap(groups, aggregate, confidence, bootstrap, seed))
    return out


def _bootstrap(groups: dict[float, Any], aggregate: str, confidence: float, n: int, seed: int) -> dict[str, Any]:
    """Percentile intervals of b and A from ``n`` resamplings of the runs within each fraction."""
    import numpy as np

    rng = np.random.default_rng(seed)
    bs_b, bs_a = [], []
    for _ in range(n):
        rx, ry = [], []
        for u, v in groups.items():
            s = rng.choice(v, size=len(v), replace=True)
            if aggregate == "median":
                rx.append(u)
                ry.append(np.median(s))
            else:
                rx.extend([u] * len(s))
                ry.extend(s)
        sl, ic, *_ = ols(np.log(rx), np.log(ry))
        bs_b.append(-sl)
        bs_a.append(math.exp(ic))
    lo, hi = 50 * (1 - confidence), 50 * (1 + confidence)
    return {
        "bootstrap": n,
        "bootstrap_b_ci": [float(np.percentile(bs_b, lo)), float(np.percentile(bs_b, hi))],
        "bootstrap_A_ci": [float(np.percentile(bs_a, lo)), float(np.percentile(bs_a, hi))],
    }


def fit_sweep(df, *, bootstrap: int = 1000, fit_on: FitOn = "epoch") -> dict[str, Any]:
    """The power-law fit of a sweep's results (a pandas DataFrame with ``train_frac`` and
    ``grokking_epoch``/``grokking_step`` columns): ``fit_power_law`` of the grokked runs, or
    ``{"error": ...}``, with ``n_runs_total``, ``n_runs_grokked``, ``y`` and ``model``.
    ``fit_on="step"`` fits optimizer steps (minibatch studies count steps, and steps per epoch
    change with the train fraction)."""
    y = f"grokking_{fit_on}"
    if "train_frac" not in df.columns:
        fit: dict[str, Any] = {"error": "train_frac is not a grid field: no power-law fit"}
    else:
        grokked = df[df[y].notna()]
        try:
            fit = fit_power_law(
                grokked["train_frac"].astype(float).tolist(),
                grokked[y].astype(float).tolist(),
                bootstrap=bootstrap,
                name=y,
            )
        except ValueError as e:
            fit = {"error": str(e)}
        fit["n_runs_total"] = len(df)
        fit["n_runs_grokked"] = len(grokked)
    fit["y"] = y
    fit["model"] = f"{y} = A * train_frac ** -b (least squares in log-log)"
    return fit

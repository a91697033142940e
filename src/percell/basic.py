"""The BaSiC flat-field estimate (Peng et al., Nat. Commun. 8, 14836, 2017).

BaSiCPy, the reference implementation, pins scipy<1.13 and numpy<2 (it would
downgrade both here), so the method is implemented from the paper with
numpy and scipy's DCT. A stack of fields ``D`` (each field flattened, all of
one channel) is split into a low-rank part ``B`` — the flat-field ``S``
scaled by each field's baseline ``b`` — and a sparse residual ``R`` (the
objects), ``D = S·bᵀ + R``, by an inexact augmented Lagrangian: ``S`` is kept
smooth by an L1 penalty on its DCT coefficients, ``R`` sparse by an L1
penalty, and the L1 weights are re-estimated from the residual a few times
(the paper's reweighting), so bright objects stop pulling the estimate.
One addition: the estimate keeps only the lowest quarter of its DCT
frequencies (``LOW_PASS``), since the penalty alone leaves pixel noise in it.
Darkfield estimation (the paper's optional additive term) is left out: the
background step subtracts offsets.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import fft

log = logging.getLogger(__name__)


def _dct2(a: np.ndarray) -> np.ndarray:
    return fft.dctn(a, norm="ortho")


def _idct2(a: np.ndarray) -> np.ndarray:
    return fft.idctn(a, norm="ortho")


def _shrink(x: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """Soft threshold: the proximal map of the L1 norm."""
    return np.sign(x) * np.maximum(np.abs(x) - t, 0)


#: the share of DCT frequencies (per axis) a flat-field keeps
LOW_PASS = 0.25


def _low_pass(flat: np.ndarray) -> np.ndarray:
    """The flat-field without detail finer than LOW_PASS of the frequencies.

    The L1 penalty on the DCT alone leaves the per-pixel noise of the mean
    field in the estimate (a stronger penalty flattens the vignette itself),
    so frequencies no illumination profile has are dropped outright."""
    coefficients = _dct2(flat)
    h, w = flat.shape
    coefficients[int(np.ceil(h * LOW_PASS)) :, :] = 0
    coefficients[:, int(np.ceil(w * LOW_PASS)) :] = 0
    return _idct2(coefficients)


def _fit(
    data: np.ndarray,
    weight: np.ndarray,
    smoothness: float,
    max_iterations: int,
    tolerance: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One inexact-ALM solve: (flat-field S, baselines b, residual R)."""
    k, h, w = data.shape
    mean_image = data.mean(axis=0)
    # the paper's regularisation: scaled by the mean field's DCT energy
    lam_flat = smoothness * np.abs(_dct2(mean_image)).sum() / 400 * 0.5
    lam_sparse = 1.0  # (the data are scaled to mean 1, the weights too)
    spectral = np.linalg.norm(data.reshape(k, -1), ord=2)
    mu, mu_max, rho = 12.5 / spectral, 12.5 / spectral * 1e7, 1.5
    norm_d = np.linalg.norm(data)
    s_hat = np.zeros((h, w))  # DCT coefficients of S
    baseline = np.ones(k)
    residual = np.zeros_like(data)
    dual = np.zeros_like(data)
    for _ in range(max_iterations):
        flat = _idct2(s_hat)
        low = flat[np.newaxis] * baseline[:, np.newaxis, np.newaxis]
        step = (data - low - residual + dual / mu).mean(axis=0)
        s_hat = _shrink(s_hat + _dct2(step), lam_flat / mu)
        flat = _idct2(s_hat)
        low = flat[np.newaxis] * baseline[:, np.newaxis, np.newaxis]
        residual = _shrink(
            residual + (data - low - residual + dual / mu), weight * lam_sparse / mu
        )
        kept = data - residual
        baseline = np.maximum(
            kept.reshape(k, -1).mean(axis=1) / max(kept.mean(), 1e-12), 0
        )
        low = flat[np.newaxis] * baseline[:, np.newaxis, np.newaxis]
        gap = data - low - residual
        dual = dual + mu * gap
        mu = min(mu * rho, mu_max)
        if np.linalg.norm(gap) / norm_d < tolerance:
            break
    return _idct2(s_hat), baseline, residual


def basic_flatfield(
    fields: np.ndarray,
    smoothness: float = 1.0,
    reweighting: int = 10,
    max_iterations: int = 500,
    tolerance: float = 1e-6,
) -> np.ndarray:
    """The flat-field of a stack of fields (K, Y, X), normalised to mean 1.

    Args:
        fields: K ≥ 2 fields of one channel (a working size of about 128 px
            is plenty: the flat-field is smooth).
        smoothness: Weight of the DCT sparsity of the flat-field (larger:
            smoother), the paper's λ_S relative to its default.
        reweighting: Rounds of re-estimated L1 weights.

    Returns:
        float64 (Y, X), mean 1: divide a raw field by it.
    """
    data = np.asarray(fields, np.float64)
    if data.ndim != 3 or data.shape[0] < 2:
        raise ValueError(f"BaSiC needs a stack of at least 2 fields, got {data.shape}")
    scale = data.mean()
    if not scale > 0:
        raise ValueError("BaSiC needs fields with a positive mean intensity")
    data = data / scale
    weight = np.ones_like(data)
    flat = np.ones(data.shape[1:])
    for round_ in range(max(1, reweighting)):
        previous = flat
        flat, baseline, residual = _fit(
            data, weight, smoothness, max_iterations, tolerance
        )
        flat = _low_pass(flat)
        flat = flat / flat.mean()
        # objects (large relative residuals) get small weights next round
        low = flat[np.newaxis] * baseline[:, np.newaxis, np.newaxis]
        relative = residual / np.maximum(low.mean(), 1e-12)
        weight = 1.0 / (np.abs(relative) + 0.1)
        weight = weight * weight.size / weight.sum()
        change = np.abs(flat - previous).mean()
        log.debug("BaSiC round %d: flat-field change %.2e", round_ + 1, change)
        if round_ and change < 1e-3:
            break
    return flat

"""Encoder and decoder networks (Chen & Ludtke 2021).

Encoder: per-particle gradient features (N × k) -> latent z (MLP, 3 × 512, ReLU).
Decoder: z -> per-Gaussian changes of the neutral GMM (MLP, 3 × 512, ReLU),
masked by what may vary (columns: positions, amplitude, width; rows: the
Gaussians inside a focus mask). Its last layer starts at zero, so the decoder
reproduces the neutral model at initialisation for every z — the paper's
"decoder first reproduces the neutral model" without a pretraining pass.

Changes are parametrised so that each has a natural range:
  position  c + pos_scale · out                 (Å; unbounded)
  amplitude A · (1 + tanh(out))                 (0 … 2A: a part can vanish)
            or A · (1 + clamp(out, -1, 1))      (amp_mode "linear": same range, but
                                                 zero is reached at out = -1 with a
                                                 constant gradient on the way)
  width     s · exp(0.5 · tanh(out))            (0.61 s … 1.65 s)
"""
import math

import torch
from torch import nn

from .gmm import AMP, WIDTH

COLUMNS = {"positions": [0, 1, 2], "amplitudes": [AMP], "widths": [WIDTH]}


def mlp(n_in, n_out, hidden=512, layers=3):
    mods, width = [], n_in
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    mods.append(nn.Linear(width, n_out))
    return nn.Sequential(*mods)


def varying_columns(vary_positions=True, vary_amplitudes=True, vary_widths=False):
    cols = []
    if vary_positions:
        cols += COLUMNS["positions"]
    if vary_amplitudes:
        cols += COLUMNS["amplitudes"]
    if vary_widths:
        cols += COLUMNS["widths"]
    if not cols:
        raise ValueError("at least one of positions, amplitudes or widths must vary")
    return cols


class Encoder(nn.Module):
    """features (B, N, k) -> z (B, L) = linear(features) + MLP(features).

    The linear branch can be set to the features' principal components
    (``init_pca``) with the MLP's last layer at zero, so training starts from the
    PCA of the features (the linear baseline) and the MLP learns what a linear
    map cannot.

    ``variational``: the MLP also outputs log σ² per latent dimension (a
    diagonal Gaussian posterior, starting at σ = ``init_sigma``); ``forward``
    returns the mean, ``posterior`` both."""

    def __init__(self, n_features, latent_dim, hidden=512, variational=False,
                 init_sigma=0.05):
        super().__init__()
        self.latent_dim, self.variational = latent_dim, variational
        self.net = mlp(n_features, latent_dim * (2 if variational else 1), hidden)
        self.register_buffer("logvar0", torch.tensor(2 * math.log(max(init_sigma, 1e-6))))
        self.linear = nn.Linear(n_features, latent_dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    @torch.no_grad()
    def init_pca(self, mean, components, scale):
        """z = (x - mean) · componentsᵀ / scale; MLP output zeroed."""
        w = torch.as_tensor(components, dtype=torch.float32) / scale
        self.linear.weight.copy_(w)
        self.linear.bias.copy_(-(w @ torch.as_tensor(mean, dtype=torch.float32)))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def posterior(self, features):
        """(mean, log σ²) of z; log σ² is None if not variational."""
        x = features.flatten(1)
        out = self.net(x)
        mu = self.linear(x) + out[:, :self.latent_dim]
        if not self.variational:
            return mu, None
        # bounded (σ in 0.0025 … 2.7): an unbounded log σ² lets single batches blow up
        return mu, (out[:, self.latent_dim:] + self.logvar0).clamp(-12.0, 2.0)

    def forward(self, features):
        return self.posterior(features)[0]


class Decoder(nn.Module):
    """z (B, L) -> per-particle GMM params (B, N, 5)."""

    def __init__(self, neutral, latent_dim, columns, gaussian_mask=None, pos_scale=5.0,
                 hidden=512, amp_mode="linear"):
        super().__init__()
        if amp_mode not in ("tanh", "linear"):
            raise ValueError("amplitude mode must be 'tanh' or 'linear'")
        self.amp_mode, self.latent_dim = amp_mode, latent_dim
        self.register_buffer("neutral", torch.as_tensor(neutral, dtype=torch.float32))
        n = self.neutral.shape[0]
        self.columns = list(columns)
        self.pos_scale = float(pos_scale)
        mask = torch.ones(n) if gaussian_mask is None else torch.as_tensor(
            gaussian_mask, dtype=torch.float32)
        self.register_buffer("gaussian_mask", mask)
        self.net = mlp(latent_dim, n * len(self.columns), hidden)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def changes(self, z):
        """Raw network outputs (B, N, k), zero outside the focus mask."""
        out = self.net(z).view(z.shape[0], -1, len(self.columns))
        return out * self.gaussian_mask[None, :, None]

    def forward(self, z):
        out = self.changes(z)
        p = self.neutral.unsqueeze(0).expand(z.shape[0], -1, -1)
        cols = []
        for j in range(5):
            col = p[..., j]
            if j in self.columns:
                o = out[..., self.columns.index(j)]
                if j < 3:
                    col = col + self.pos_scale * o
                elif j == AMP:
                    col = col * (1 + (torch.tanh(o) if self.amp_mode == "tanh"
                                      else o.clamp(-1.0, 1.0)))
                else:
                    col = col * torch.exp(0.5 * torch.tanh(o))
            cols.append(col)
        return torch.stack(cols, -1)

"""``decode``: GMM maps decoded at latent points by a trained decoder.

With ``--serve`` it stays up and decodes one point per line of standard input
(``z1 z2 ...``), answering each with the path of the map it wrote (or
``ERROR: ...``): the latent-selection window uses it to show the GMM at any
point the user clicks, without reloading the networks each time.
"""
import os
import sys

import numpy as np

from .common import load_gmm

NAME = "decode"
HELP = "GMM maps decoded at latent points (interactive with --serve)"


def add_args(d):
    d.add_argument("--checkpoint", required=True, help="trained networks")
    d.add_argument("--gmm", required=True, help="the neutral GMM they were trained on")
    d.add_argument("--out-dir", required=True)
    d.add_argument("--latent", action="append", default=[],
                   help="a latent point 'z1,z2,...' (repeatable)")
    d.add_argument("--box", type=int, default=0, help="map box (0 = the GMM's)")
    d.add_argument("--serve", action="store_true",
                   help="decode the points read from standard input, one per line")


class Decoder:
    """The trained decoder and the grid its maps are rendered on."""

    def __init__(self, a):
        from ..checkpoint import load_decoder
        gmm = load_gmm(a.gmm)
        self.box = a.box or gmm.box
        if not self.box:
            raise ValueError("the GMM has no box: give --box")
        self.apix = gmm.apix * gmm.box / self.box
        self.decoder = load_decoder(a.checkpoint, gmm.params, a.device_obj)
        self.device, self.out_dir, self.count = a.device_obj, a.out_dir, 0
        self.dim = self.decoder.latent_dim
        os.makedirs(a.out_dir, exist_ok=True)

    def __call__(self, point):
        """Path of the map decoded at ``point`` (a sequence of latent_dim floats)."""
        import torch
        from ..gmm import render_volume_fourier
        from ..io import write_map
        z = np.asarray(point, dtype=np.float32).ravel()
        if len(z) != self.dim or not np.all(np.isfinite(z)):
            raise ValueError("a latent point needs %d finite values, got %r"
                             % (self.dim, list(point)))
        with torch.no_grad():
            params = self.decoder(torch.as_tensor(z[None], device=self.device))[0]
            vol = render_volume_fourier(params.double(), self.box, self.apix).cpu().numpy()
        path = os.path.join(self.out_dir, "decoded_%03d.mrc" % self.count)
        self.count += 1
        write_map(path, vol, self.apix)
        return os.path.abspath(path)


def _floats(text):
    return [float(v) for v in text.replace(",", " ").split()]


def main(a):
    decode = Decoder(a)
    for point in a.latent:
        print(decode(_floats(point)), flush=True)
    if not a.serve:
        return
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            print(decode(_floats(line)), flush=True)
        except ValueError as e:
            print("ERROR: %s" % e, flush=True)

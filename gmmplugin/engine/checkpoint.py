"""Reading a training's checkpoint outside the training: its settings (to train
N more epochs with them) and its decoder (to decode latent points)."""
import os

import torch

from .networks import Decoder
from .settings import TrainConfig


def checkpoint_state(checkpoint):
    """(epochs trained, TrainConfig) of a checkpoint: what "train N more epochs
    with the same settings" starts from."""
    if not os.path.exists(checkpoint):
        raise FileNotFoundError("no checkpoint to continue from: %s" % checkpoint)
    try:
        ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ValueError("cannot read the checkpoint %s: %s" % (checkpoint, e))
    return int(ck["epoch"]), TrainConfig(**ck["config"])


def load_decoder(checkpoint, gmm_params, device="cpu", latents=None):
    """The trained decoder of a checkpoint, ready to decode latent points. With
    ``latents`` (a training's latents file, opened), they must come from the same
    run and epoch as the checkpoint: latents of one run decoded by another run's
    networks would give plausible-looking but wrong maps."""
    if not os.path.exists(checkpoint):
        raise FileNotFoundError("checkpoint not found: %s" % checkpoint)
    ck = torch.load(checkpoint, map_location=device, weights_only=False)
    if latents is not None and "run_id" in latents.files:
        if (str(latents["run_id"]) != ck.get("run_id")
                or int(latents["epoch"]) != ck["epoch"]):
            raise ValueError("the latents (run %s, epoch %d) and the checkpoint %s (run %s, "
                             "epoch %d) come from different runs or epochs: use the "
                             "latents this checkpoint wrote"
                             % (str(latents["run_id"])[:8], int(latents["epoch"]),
                                checkpoint, str(ck.get("run_id"))[:8], ck["epoch"]))
    cfg = ck["config"]
    n_ck = ck["decoder"]["neutral"].shape[0]
    if n_ck != len(gmm_params):
        raise ValueError("the networks of %s were trained on a GMM of %d Gaussians, not %d"
                         % (checkpoint, n_ck, len(gmm_params)))
    dec = Decoder(gmm_params, cfg["latent_dim"], ck["columns"], ck["focus"], cfg["pos_scale"],
                  amp_mode=cfg["amp_mode"])
    dec.load_state_dict(ck["decoder"])
    return dec.to(device).eval()

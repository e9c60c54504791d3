"""Wizards of the gmmplugin forms."""
from pwem.wizards import EmWizard

from .convert import gmm_flex_attr
from .protocols import GmmProtSelectLatent


def latent_arrays(partSet):
    """(zRed (n, 2), z (n, L), classes (n,) or None) of a flexible set, by id."""
    import numpy as np
    from .protocols.protocol_select import latent_view
    _, zred, classes = latent_view(partSet)
    z = np.array([list(p.getZFlex()) for p in partSet.iterItems(orderBy="id")],
                 dtype=np.float64)
    return zred, z, classes


class GmmLatentSelectionWizard(EmWizard):
    """Draw the selection's polygons on the latent plot (and look at the GMM
    decoded at any point); the result goes into the Polygons field."""
    _targets = [(GmmProtSelectLatent, ["polygons"])]

    def show(self, form, *params):
        from .viewers.latent_selection import Decoding, LatentSelectionWindow
        prot = form.protocol
        inp = prot.inputParticles.get()
        if inp is None or inp.getSize() == 0:
            form.showError("Select the input particles first.")
            return None
        zred, z, classes = latent_arrays(inp)
        checkpoint, gmm = gmm_flex_attr(inp, "modelPath"), gmm_flex_attr(inp, "gmmPath")
        decoding = None
        if checkpoint and gmm:
            decoding = _Lazy(lambda: Decoding(checkpoint, gmm,
                                              form.protocol.getProject().getTmpPath(
                                                  "gmm_decoded")))
        return LatentSelectionWindow(form.root, zred, z, classes, _typed(form, "polygons"),
                                     decoding,
                                     on_apply=lambda text: form.setVar("polygons", text))


def _typed(form, name):
    """What the form's field ``name`` holds now (typed, not yet saved)."""
    var = form.widgetDict.get(name)
    value = var.get() if var is not None else getattr(form.protocol, name).get()
    return value or ""


class _Lazy:
    """Starts the decoding engine process at the first request (the first click)."""

    def __init__(self, start):
        self.start, self.decoding = start, None

    def __call__(self, z):
        if self.decoding is None:
            self.decoding = self.start()
        return self.decoding(z)

    def close(self):
        if self.decoding is not None:
            self.decoding.close()

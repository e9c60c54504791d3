"""Wizards of the gmmplugin forms."""
from pwem.wizards import EmWizard

from .convert import gmm_flex_attr
from .protocols import GmmProtSelectLatent
from .viewers.latent_selection import (Decoding, LatentSelectionWindow, StartOnFirstUse,
                                       latent_arrays)


class GmmLatentSelectionWizard(EmWizard):
    """Draw the selection's polygons on the latent plot, pick whole classes (and
    look at the GMM decoded at any point); the result goes into the Polygons and
    Classes fields."""
    _targets = [(GmmProtSelectLatent, ["polygons"])]

    def show(self, form, *params):
        prot = form.protocol
        inp = prot.inputParticles.get()
        if inp is None or inp.getSize() == 0:
            form.showError("Select the input particles first.")
            return None
        zred, z, classes = latent_arrays(inp)
        checkpoint, gmm = gmm_flex_attr(inp, "modelPath"), gmm_flex_attr(inp, "gmmPath")
        decoding = None
        if checkpoint and gmm:
            decoding = StartOnFirstUse(lambda: Decoding(checkpoint, gmm,
                                              form.protocol.getProject().getTmpPath(
                                                  "gmm_decoded")))
        def apply(polygons, class_ids):
            form.setVar("polygons", polygons)
            form.setVar("classIds", class_ids)
        return LatentSelectionWindow(form.root, zred, z, classes, _typed(form, "polygons"),
                                     decoding, on_apply=apply,
                                     class_ids=_typed(form, "classIds"))


def _typed(form, name):
    """What the form's field ``name`` holds now (typed, not yet saved)."""
    var = form.widgetDict.get(name)
    value = var.get() if var is not None else getattr(form.protocol, name).get()
    return value or ""

"""GmmProtSelectLatent: particles selected in the 2-D latent view (zRed)."""
import os

import numpy as np
import pyworkflow.protocol.params as params
from pwem.objects import SetOfParticlesFlex
from pwem.protocols import ProtFlexBase, ProtSets

from ..engine import selection
from ..engine.io import write_json
from .protocol_base import GmmProtBase

# Output name -> class (a dict: two outputs share a class, which an Enum would
# silently turn into aliases).
PARTICLES, COMPLEMENT = "Particles", "Complement"
OUTPUTS = {PARTICLES: SetOfParticlesFlex, COMPLEMENT: SetOfParticlesFlex}


def _per_particle(values, dtype):
    """The values as an array, or None unless every particle has one."""
    if values and all(v is not None for v in values):
        return np.array(values, dtype)
    return None


def _attribute(p, name):
    value = getattr(p, name, None)
    return value.get() if value is not None else None


def latent_view(partSet, with_confidence=False):
    """(ids, zRed (n, 2), class of each particle or None) of a flexible set, and
    with ``with_confidence`` each particle's latent confidence (or None)."""
    ids, zred, classes, confidence = [], [], [], []
    for p in partSet.iterItems(orderBy="id"):
        ids.append(p.getObjId())
        zred.append(list(p.getZRed())[:2])
        classes.append(_attribute(p, "_gmmClass"))
        confidence.append(_attribute(p, "_gmmConfidence"))
    view = (np.array(ids, np.int64), np.array(zred, np.float64).reshape(-1, 2),
            _per_particle(classes, np.int64))
    return view + (_per_particle(confidence, np.float64),) if with_confidence else view


class GmmProtSelectLatent(GmmProtBase, ProtSets, ProtFlexBase):
    """Select particles by where they sit in the latent space: inside polygons
    drawn on the 2-D latent view (zRed), and/or in classes of 'analyze latent
    space'. The wizard of the polygon field opens the latent plot: draw one or
    more polygons, see the count, and click any point to see the GMM decoded
    there. The selection used is saved with the run, so the run can be repeated
    exactly. Output: the selected particles with their latents, and optionally
    the others."""
    _label = "select particles in latent space"
    _possibleOutputs = OUTPUTS

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputParticles", params.PointerParam,
                      pointerClass="SetOfParticlesFlex", important=True,
                      label="Particles with latents",
                      help="The Particles output of 'heterogeneity training' or of "
                           "'analyze latent space' (the latter also carries classes).")
        form.addSection(label="Selection")
        form.addParam("polygons", params.TextParam, default="", label="Polygons (zRed)",
                      help="Regions of the 2-D latent view: 'x,y x,y x,y; x,y x,y x,y' "
                           "(one polygon per ';'). Use the wizard to draw them on the "
                           "latent plot. A particle inside any polygon is selected.")
        form.addParam("classIds", params.StringParam, default="", label="Classes",
                      help="Class ids of 'analyze latent space' (e.g. '1 3'); their "
                           "particles are selected too. Needs that protocol's Particles.")
        form.addParam("selectionFile", params.FileParam, default="",
                      expertLevel=params.LEVEL_ADVANCED, label="Selection file",
                      help="A selection saved by an earlier run (its selection.json): "
                           "its polygons and classes are added to those above.")
        form.addParam("minConfidence", params.FloatParam, default=0.0,
                      label="Minimum latent confidence",
                      help="Keep only particles whose place along the motion is this "
                           "well determined by their own image (0–1, written by "
                           "'heterogeneity training': 1 = "
                           "pinned down, 0 = no better than the population's spread). "
                           "Applied to the polygons and classes above, or alone to the "
                           "whole set when none is given. Raise it (e.g. 0.5) for maps of "
                           "a state from its most certain members; 0 = no filter.")
        form.addParam("keepComplement", params.BooleanParam, default=False,
                      label="Also output the rest?",
                      help="A second set with the particles that were not selected.")

    def _insertAllSteps(self):
        # the selection is the step's argument: a changed selection re-runs it
        self._insertFunctionStep(self.selectStep, self.polygons.get() or "",
                                 self.classIds.get() or "", self.selectionFile.get() or "",
                                 self.minConfidence.get(), self._inputSignature(),
                                 needsGPU=False)
        self._insertSteps(self.createOutputStep)

    def _selection(self, polygons_text, classes_text, path):
        polygons = selection.parse_polygons(polygons_text)
        class_ids = selection.parse_classes(classes_text)
        if path:
            more_polygons, more_classes = selection.read_selection(path)
            polygons += more_polygons
            class_ids = sorted(set(class_ids) | set(more_classes))
        return polygons, class_ids

    def selectStep(self, polygons_text, classes_text, path, min_confidence, inputs):
        polygons, class_ids = self._selection(polygons_text, classes_text, path)
        selection.write_selection(self._getFileName("selection"), polygons, class_ids,
                                  min_confidence)

    def _selected(self):
        """(ids, zRed, selected mask, polygons) of the saved selection."""
        path = self._getFileName("selection")
        polygons, class_ids = selection.read_selection(path)
        min_confidence = selection.read_min_confidence(path)
        ids, zred, classes, confidence = latent_view(self.inputParticles.get(), True)
        if polygons or class_ids:
            keep = selection.select(zred, polygons, classes, class_ids)
        else:                                 # a confidence filter alone: the whole set
            keep = np.ones(len(ids), dtype=bool)
        if min_confidence > 0:
            keep &= selection.confident(confidence, min_confidence)
        return ids, zred, keep, polygons

    def createOutputStep(self, inputs):
        inp = self.inputParticles.get()
        ids, _, keep, _ = self._selected()
        if not keep.any():
            raise ValueError("The selection holds no particle; nothing to output.")
        chosen = set(ids[keep].tolist())
        polygons, class_ids = selection.read_selection(self._getFileName("selection"))
        write_json(self._getFileName("selection_info"),
                   {"selected": int(keep.sum()), "particles": int(len(ids)),
                    "polygons": len(polygons), "classes": class_ids,
                    "min_confidence": selection.read_min_confidence(
                        self._getFileName("selection"))})
        outputs = {PARTICLES: self._subset(inp, chosen, True, "")}
        if self.keepComplement.get() and not keep.all():
            outputs[COMPLEMENT] = self._subset(inp, chosen, False, "complement")
        self._defineOutputs(**outputs)
        for out in outputs.values():
            self._defineSourceRelation(self.inputParticles, out)

    def _subset(self, inp, chosen, inside, suffix):
        out = self._createSetOfParticlesFlex(suffix=suffix,
                                             progName=inp.getFlexInfo().getProgName())
        out.copyInfo(inp)
        out.setFlexInfo(inp.getFlexInfo())
        for p in inp.iterItems(orderBy="id"):
            if (p.getObjId() in chosen) == inside:
                out.append(p)
        return out

    # -- checks and reports ---------------------------------------------------------------
    def _validate(self):
        inp = self.inputParticles.get()
        if inp is None or inp.getSize() == 0:
            return ["Select a non-empty set of particles with latents."]
        first = inp.getFirstItem()
        if not hasattr(first, "getZRed") or len(first.getZRed()) < 2:
            return ["The input particles carry no 2-D latent view (zRed): use the output "
                    "of 'heterogeneity training' or 'analyze latent space'."]
        path = self.selectionFile.get() or ""
        if path and not os.path.exists(path):
            return ["The selection file does not exist: %s" % path]
        errors = self.problems(lambda: self._selection(self.polygons.get() or "",
                                                       self.classIds.get() or "", path))
        if errors:
            return errors
        polygons, class_ids = self._selection(self.polygons.get() or "",
                                              self.classIds.get() or "", path)
        min_confidence = self.minConfidence.get() or 0.0
        errors += self.problems(lambda: selection.confident([], min_confidence))
        if errors:
            return errors
        if not polygons and not class_ids and min_confidence == 0:
            return ["Give at least one polygon (draw it with the wizard), one class or a "
                    "minimum latent confidence."]
        if min_confidence > 0 and getattr(first, "_gmmConfidence", None) is None:
            errors.append("These particles carry no latent confidence: use the Particles "
                          "output of 'heterogeneity training' (or of a protocol that "
                          "kept its attributes).")
        if class_ids and getattr(first, "_gmmClass", None) is None:
            errors.append("These particles carry no classes: select by polygon, or use "
                          "the Particles output of 'analyze latent space'.")
        return errors

    def _summary(self):
        info = self.readResult("selection_info")
        if info is None:
            return ["Output not ready yet."]
        return ["%d of %d particles selected (%d polygon(s)%s%s)."
                % (info["selected"], info["particles"], info["polygons"],
                   "; classes %s" % ", ".join(map(str, info["classes"]))
                   if info["classes"] else "",
                   "; latent confidence ≥ %g" % info["min_confidence"]
                   if info.get("min_confidence") else "")]

    def _methods(self):
        info = self.readResult("selection_info")
        if info is None:
            return []
        return ["%d of %d particles were selected by their position in the GMM latent "
                "space (gmmplugin)." % (info["selected"], info["particles"])]

    def _citations(self):
        return ["Chen2021"]


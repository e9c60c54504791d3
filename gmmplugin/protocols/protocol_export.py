"""GmmProtExportLatents: latents for cryoDRGN's tools, a volume series for ChimeraX."""
import json
import os
import shutil

import numpy as np
import pyworkflow.protocol.params as params

from ..convert import gmm_flex_attr
from ..engine import export
from ..engine.io import write_json
from .protocol_base import GmmProtBase

INFO = "export.json"


def _series_of(volume):
    """The series name a volume of 'analyze latent space' carries (None for others).
    Read while iterating: a set's iteration reuses one item object."""
    name = getattr(volume, "_gmmSeries", None)
    return name.get() if name is not None else None


def series_maps(volumes, series):
    """Files of the volume series to play, in order: the frames of ``series``
    ("pc1", "class2", "path") when the volumes are frames of 'analyze latent
    space' (they carry their series' name), otherwise (or with no series name)
    every volume by id."""
    items = [(_series_of(v), v.getFileName()) for v in volumes.iterItems(orderBy="id")]
    if series:
        frames = [fn for name, fn in items if name == series]
        if frames:
            return frames               # the analysis appends each series' frames in order
    return [fn for _, fn in items]


class GmmProtExportLatents(GmmProtBase):
    """Write a latent space and a trajectory in the formats other programs read,
    so results can be taken outside Scipion: the particles' latent vectors as
    cryoDRGN's z.pkl (and ind.pkl for a subset such as a selection or a class),
    and a volume series (e.g. a trajectory of 'analyze latent space') as a
    ChimeraX script that plays it. Nothing is registered as output; the
    summary lists the files."""
    _label = "export latents and volume series"

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputParticles", params.PointerParam,
                      pointerClass="SetOfParticlesFlex", allowsNull=True,
                      label="Particles with latents",
                      help="Any Particles output of this plugin (training, analysis, "
                           "selection, refined orientations). z.pkl holds one latent "
                           "row per particle, in the order of the particles that were "
                           "trained (by id), which is the order of Scipion's RELION "
                           "export of the training's input. For a subset of them, z.pkl "
                           "holds the whole latent space and ind.pkl the subset's rows, "
                           "as cryoDRGN's own filtering does.")
        form.addParam("inputVolumes", params.PointerParam, pointerClass="SetOfVolumes",
                      allowsNull=True, label="Volume series",
                      help="Maps to play as a series in ChimeraX, e.g. the Volumes or "
                           "GmmVolumes of 'analyze latent space'.")
        form.addParam("series", params.StringParam, default="pc1",
                      label="Volume series",
                      help="For frames of 'analyze latent space': which of its series to "
                           "play: pc1, pc2 … (principal axes), class1 … (a class's "
                           "principal curve) or path. Empty (or other volumes): every "
                           "volume of the set in order.")
        form.addParam("exportFolder", params.FolderParam, default="",
                      label="Also copy to folder",
                      help="Optional: a folder (e.g. a cryoDRGN work folder) that gets a "
                           "copy of the exported files. They are always written in this "
                           "run's extra folder.")

    def _insertAllSteps(self):
        self._insertFunctionStep(self.exportStep, self._inputSignature(),
                                 (self.series.get() or "").strip(), needsGPU=False)

    # -- step --------------------------------------------------------------------------
    def _fullSpace(self, parts):
        """(ids, z) of the training the particles come from, or (None, None)."""
        path = gmm_flex_attr(parts, "latentsPath")
        if not path or not os.path.exists(str(path)):
            return None, None
        with np.load(str(path)) as lat:
            if "source_ids" in lat.files:       # symmetry-expanded: no stack order
                return None, None
            return lat["ids"], lat["z"]

    def exportStep(self, inputs, series):
        info, written = {}, []
        parts = self.inputParticles.get()
        if parts is not None:
            ids, z = [], []
            for p in parts.iterItems(orderBy="id"):
                ids.append(p.getObjId())
                z.append(list(p.getZFlex()))
            paths, rows, n = export.write_cryodrgn(self._getExtraPath("cryodrgn"), ids, z,
                                                   *self._fullSpace(parts))
            written += paths
            info.update(particles=n, rows=rows, latent_dim=len(z[0]),
                        subset=len(paths) > 1)
        vols = self.inputVolumes.get()
        if vols is not None:
            maps = [os.path.abspath(m) for m in series_maps(vols, series)]
            written.append(export.chimerax_series_script(
                self._getExtraPath(export.SERIES_CXC), maps))
            info["maps"] = len(maps)
        folder = self.exportFolder.get()
        if folder:
            os.makedirs(folder, exist_ok=True)
            written += [shutil.copy(p, os.path.join(folder, os.path.basename(p)))
                        for p in list(written)]
        info["files"] = [os.path.abspath(p) for p in written]
        write_json(self._getExtraPath(INFO), info)

    # -- checks and reports --------------------------------------------------------------
    def _validate(self):
        parts, vols = self.inputParticles.get(), self.inputVolumes.get()
        if parts is None and vols is None:
            return ["Give particles with latents, a volume series, or both."]
        errors = []
        if parts is not None:
            first = parts.getFirstItem() if parts.getSize() else None
            if first is None or not hasattr(first, "getZFlex") or not len(first.getZFlex()):
                errors.append("The particles carry no latent vectors (zFlex).")
        if vols is not None and vols.getSize() == 0:
            errors.append("The volume series is empty.")
        series = (self.series.get() or "").strip()
        names = ({_series_of(v) for v in vols.iterItems()} - {None}
                 if vols is not None and series else set())
        if names and series not in names:
            errors.append("These volumes have no series '%s' (they have: %s)."
                          % (series, ", ".join(sorted(names))))
        return errors

    def _info(self):
        path = self._getExtraPath(INFO)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def _summary(self):
        info = self._info()
        if info is None:
            return ["Output not ready yet."]
        lines = []
        if "particles" in info:
            if info["subset"]:
                lines.append("cryoDRGN latents: z.pkl with the %d particles trained "
                             "(dimension %d) and ind.pkl with the rows of these %d."
                             % (info["rows"], info["latent_dim"], info["particles"]))
            else:
                lines.append("cryoDRGN latents: z.pkl with %d particles (dimension %d)."
                             % (info["rows"], info["latent_dim"]))
        if "maps" in info:
            lines.append("ChimeraX volume series of %d maps: open series.cxc in ChimeraX."
                         % info["maps"])
        lines.append("Files: %s" % ", ".join(info["files"]))
        return lines

    def _methods(self):
        return []

    def _citations(self):
        return ["Zhong2021"] if self.inputParticles.get() is not None else []


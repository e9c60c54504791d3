"""GmmProtRefineModels: an atomic model refined into a map or a volume series."""
import os

import pyworkflow.object as pwobj
import pyworkflow.protocol.params as params
from pwem.objects import AtomStruct, AtomStructFlex, SetOfAtomStructFlex
from pwem.protocols import ProtAnalysis3D

from ..constants import FLEX_PROGRAM
from ..convert import map_file, model_atoms
from ..engine import checks
from .protocol_base import GmmProtBase
STAGE_CHOICES = ["patches", "patches + residues", "patches + residues + atoms"]
STAGE_NAMES = ("patch", "residue", "atom")


# Output name -> class (a dict: two outputs may share a class, which an Enum
# would silently turn into aliases).
ATOM_STRUCT, ATOM_STRUCTS = "AtomStruct", "AtomStructs"   # one map | a volume series
OUTPUTS = {ATOM_STRUCT: AtomStruct, ATOM_STRUCTS: SetOfAtomStructFlex}


class GmmProtRefineModels(GmmProtBase, ProtAnalysis3D):
    """Refine an atomic model into one map, or into every map of a volume
    series (e.g. the trajectory frames of 'analyze latent space'), with
    the atoms as Gaussians (Chen 2025): rigid moves of k-means patches of
    residues, then of residues, then of atoms, decoded from each map's latent
    coordinate, fitted by the FRC of projections up to the target resolution
    under stereochemical restraints from the CCP4 monomer library (bonds,
    angles, planes, chirality, peptide ω, side-chain χ), a smooth Ramachandran
    term and a clash term. Ligands, waters and residues without a dictionary
    move rigidly with their residue and patch. Every output model comes with a
    validation row (library RMSZ, Ramachandran, tortoize z-scores and
    king-probe clashscore when installed)."""
    _label = "refine atomic model series"
    _possibleOutputs = OUTPUTS

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputAtomStruct", params.PointerParam, pointerClass="AtomStruct",
                      important=True, label="Starting atomic model",
                      help="PDB or mmCIF, in the maps' frame (their MRC header origin, "
                           "as a model viewer overlays them). Hydrogens and alternative "
                           "conformations are removed; waters and ligands are kept rigid.")
        form.addParam("inputVolume", params.PointerParam, pointerClass="Volume",
                      allowsNull=True, label="Map (single-model refinement)",
                      help="Refine one model into this map. Leave empty to use a volume "
                           "series.")
        form.addParam("inputVolumes", params.PointerParam, pointerClass="SetOfVolumes",
                      allowsNull=True, label="Volume series",
                      help="One model per map, in order. A SetOfVolumesFlex (e.g. the "
                           "'Volumes' of 'analyze latent space') gives each map its "
                           "latent coordinate, so models between frames can be decoded "
                           "smoothly; for a plain set the frame index is used.")
        form.addParam("targetResolution", params.FloatParam, default=4.0,
                      label="Target resolution (Å)",
                      help="Model and map projections are compared up to this resolution "
                           "(the maps' resolution, typically 3–6 Å).")
        form.addParam("stages", params.EnumParam, choices=STAGE_CHOICES, default=2,
                      label="Refinement stages",
                      help="Patches: rigid moves of groups of residues (large motions). "
                           "Residues: rigid moves of each residue. Atoms: per-atom moves "
                           "(side chains, local fit). Each stage starts from the "
                           "previous one.")
        form.addParam("numPatches", params.IntParam, default=64,
                      label="Number of patches",
                      help="k-means groups of residues moved rigidly in the first stage.")
        form.addParam("geometryWeight", params.FloatParam, default=0.0,
                      label="Geometry weight",
                      help="Weight of the stereochemistry against the map term. 0 = "
                           "automatic: set from the map gain and geometry loss of a few "
                           "unrestrained probe steps, then raised during the last stage.")
        form.addParam("steps", params.StringParam, default="150 150 200",
                      expertLevel=params.LEVEL_ADVANCED, label="Steps per stage",
                      help="Optimisation steps of the patch, residue and atom stages.")
        self._defineEngineParams(form)

    # -- steps -----------------------------------------------------------------
    def _insertAllSteps(self):
        self._insertSteps((self.refineStep, True), self.createOutputStep)

    def _volumes(self):
        if self.inputVolume.get() is not None:
            return [self.inputVolume.get()]
        return [v.clone() for v in self.inputVolumes.get().iterItems(orderBy="id")]

    def _latents(self, vols):
        z = [list(v.getZFlex()) if hasattr(v, "getZFlex") and len(v.getZFlex()) else None
             for v in vols]
        return None if any(v is None for v in z) else z

    def refineStep(self, inputs):
        vols = self._volumes()
        maps = [map_file(v, self._getTmpPath("map_%03d.mrc" % i)) for i, v in enumerate(vols)]
        stages = ",".join(STAGE_NAMES[:self.stages.get() + 1])
        steps = ",".join(self.steps.get().replace(",", " ").split())
        args = ("--model %s --maps %s --resolution %g --stages %s --patches %d "
                "--geometry-weight %g --steps %s --apix %g --out-dir %s" % (
                    os.path.abspath(self.inputAtomStruct.get().getFileName()),
                    " ".join(maps), self.targetResolution.get(), stages,
                    self.numPatches.get(), self.geometryWeight.get(), steps,
                    vols[0].getSamplingRate(), self._getExtraPath()))
        latents = self._latents(vols)
        if latents is not None and len(vols) > 1:
            path = self._getFileName("model_latents")
            with open(path, "w") as fh:
                fh.writelines(" ".join("%.6g" % x for x in z) + "\n" for z in latents)
            args += " --latents %s" % path
        self.runEngine("refine-models", args)

    def createOutputStep(self, inputs):
        info, rows = self._info(), self._validation()
        by_frame = {r["frame"]: r for r in rows}
        vols = self._volumes()
        if self.inputVolume.get() is not None:
            fr = info["frames"][0]
            model = AtomStruct(filename=fr["model"])
            self._annotate(model, fr, by_frame.get(0))
            self._defineOutputs(**{ATOM_STRUCT: model})
            self._defineSourceRelation(self.inputVolume, model)
            self._defineSourceRelation(self.inputAtomStruct, model)
            return
        models = SetOfAtomStructFlex.create(self._getPath(), suffix="models",
                                            progName=FLEX_PROGRAM)
        for f, fr in enumerate(info["frames"]):
            item = AtomStructFlex(progName=FLEX_PROGRAM)
            item.setFileName(fr["model"])
            item.setZFlex(fr["latent"])
            item.setObjLabel("frame %d" % f)
            if f < len(vols):
                item.setVolume(vols[f])
            self._annotate(item, fr, by_frame.get(f))
            models.append(item)
        self._defineOutputs(**{ATOM_STRUCTS: models})
        self._defineSourceRelation(self.inputVolumes, models)
        self._defineSourceRelation(self.inputAtomStruct, models)

    @staticmethod
    def _annotate(model, frame, row):
        """Per-model validation figures as attributes (shown in the set browser)."""
        model._gmmFrc = pwobj.Float(frame["frc"])
        if row:
            for key, attr in (("bond_rmsz", "_gmmBondRmsz"), ("angle_rmsz", "_gmmAngleRmsz"),
                              ("rama_outliers_pct", "_gmmRamaOutliersPct"),
                              ("clashscore", "_gmmClashscore"), ("rama_z", "_gmmRamaZ")):
                if row.get(key) is not None:
                    setattr(model, attr, pwobj.Float(row[key]))

    # -- info -------------------------------------------------------------------
    def _info(self):
        return self.readResult("refine_models_info")

    def _validation(self):
        return self.readResult("validation") or []

    def _validate(self):
        errors = []
        single, series = self.inputVolume.get(), self.inputVolumes.get()
        if (single is None) == (series is None):
            return ["Give either one map or a volume series (not both)."]
        model = self.inputAtomStruct.get()
        if model is None or not os.path.exists(model.getFileName()):
            errors.append("The starting atomic model file is missing.")
        elif model_atoms(model.getFileName()) == 0:
            errors.append("The starting atomic model has no atoms.")
        vols = [single] if single is not None else list(series)
        if not vols:
            return errors + ["The volume series is empty."]
        res = self.targetResolution.get() or 0
        errors += self.problems(lambda: checks.positive(res, "the target resolution"))
        if res > 0:
            errors += self.problems(lambda: checks.resolution_within_nyquist(
                res, vols[0].getSamplingRate(), "the target resolution", "the maps'"))
        if single is None:
            dims = {tuple(v.getDim()) for v in vols}
            if len(dims) > 1:
                errors.append("The maps of the series differ in box size: %s." % sorted(dims))
            rates = sorted({round(v.getSamplingRate(), 4) for v in vols})
            if rates[-1] - rates[0] > 1e-3 * rates[0]:
                errors.append("The maps of the series differ in sampling rate: %s Å/px."
                              % ", ".join("%g" % r for r in rates))
        errors += self.problems(lambda: checks.positive(self.numPatches.get(),
                                                        "the number of patches"))
        steps = self.steps.get().replace(",", " ").split()
        if len(steps) != 3 or not all(s.isdigit() for s in steps):
            errors.append("Steps per stage needs three whole numbers (patch residue atom).")
        errors += self.problems(lambda: checks.positive(
            self.geometryWeight.get(), "the geometry weight (0 = automatic)", allow_zero=True))
        return errors

    def _summary(self):
        info = self._info()
        if info is None:
            return ["Output not ready yet."]
        rows = [r for r in self._validation() if r["frame"] >= 0]
        out = ["%d model(s) refined at %.1f Å in %.0f s (%.0f s per model); mean FRC %.3f."
               % (len(info["frames"]), info["resolution"], info["seconds"],
                  info["seconds_per_model"],
                  sum(f["frc"] for f in info["frames"]) / len(info["frames"]))]
        if rows:
            def worst(key):
                values = [r[key] for r in rows if r.get(key) is not None]
                return max(values) if values else None
            parts = [fmt % worst(key) for key, fmt in (
                ("bond_rmsz", "bond RMSZ %.2f"), ("angle_rmsz", "angle RMSZ %.2f"),
                ("rama_outliers_pct", "Ramachandran outliers %.1f%%"),
                ("clashscore", "clashscore %.1f (king-probe)")) if worst(key) is not None]
            if parts:
                out.append("Worst over models: %s." % ", ".join(parts))
        if info.get("rigid_residues"):
            out.append("Kept rigid (no dictionary): %s." % ", ".join(info["rigid_residues"]))
        if info.get("unrestrained"):
            out.append("Not restrained by the library (moved with their residue): %s."
                       % ", ".join(info["unrestrained"]))
        if info.get("rigid_polymers"):
            out.append("Kept rigid (nucleic acids, not restrained): %s."
                       % ", ".join(info["rigid_polymers"]))
        return out

    def _methods(self):
        info = self._info()
        if info is None:
            return []
        return ["The atomic model was refined into %d map(s) at %.1f Å with gmmplugin "
                "(atoms as Gaussians, patch/residue/atom decoders and stereochemical "
                "restraints from the CCP4 monomer library, Ramachandran preferences of "
                "Lovell et al. 2003 and side-chain rotamers of the Dunbrack 2010 library, "
                "after Chen 2025)."
                % (len(info["frames"]), info["resolution"])]

    def _citations(self):
        return ["Chen2025", "Lovell2003", "Shapovalov2011"]

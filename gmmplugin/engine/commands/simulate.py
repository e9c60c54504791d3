"""``simulate``: particles of an atomic model or GMM with known heterogeneity,
written as a RELION .star with their ground truth (for tests and benchmarks)."""
from .common import progress

NAME = "simulate"
HELP = "simulate particles with ground truth"


def add_args(s):
    s.add_argument("--model", required=True, help="atomic model (.pdb/.cif) or GMM (.npz)")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--n", type=int, default=1000)
    s.add_argument("--box", type=int, default=64)
    s.add_argument("--apix", type=float, default=1.5)
    s.add_argument("--snr", type=float, default=0.1, help="0 = no noise")
    s.add_argument("--defocus-min", type=float, default=5000.0)
    s.add_argument("--defocus-max", type=float, default=15000.0)
    s.add_argument("--astigmatism", type=float, default=1000.0)
    s.add_argument("--shift-sigma", type=float, default=3.0)
    s.add_argument("--atom-sigma", type=float, default=1.0)
    s.add_argument("--per-stack", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--move", default="", help='moving selection: "D,E" or "A:10-50"')
    s.add_argument("--motion", default="rotate", choices=["rotate", "translate", "cyclic"])
    s.add_argument("--amount", type=float, default=30.0, help="degrees or Å")
    s.add_argument("--axis", default="", help="x,y,z axis/direction (default automatic)")
    s.add_argument("--remove", default="", help="selection present in a fraction only")
    s.add_argument("--present-fraction", type=float, default=0.5)


def main(a):
    from ..simulate import Heterogeneity, SimulationSettings, simulate
    s = SimulationSettings(n_particles=a.n, box=a.box, apix=a.apix, snr=a.snr,
                           defocus_min=a.defocus_min, defocus_max=a.defocus_max,
                           astigmatism=a.astigmatism, shift_sigma=a.shift_sigma,
                           atom_sigma=a.atom_sigma, per_stack=a.per_stack, seed=a.seed)
    axis = tuple(float(v) for v in a.axis.split(",")) if a.axis else None
    het = Heterogeneity(move=a.move, motion=a.motion, amount=a.amount, axis=axis,
                        remove=a.remove, present_fraction=a.present_fraction)
    star = simulate(a.model, a.out_dir, s, het, device=a.device_obj,
                    progress=progress("simulate"))
    print("wrote %s" % star)

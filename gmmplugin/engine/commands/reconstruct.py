"""``reconstruct``: CTF-corrected direct Fourier inversion of a particle (sub)set
into a map, two half maps and their FSC."""
import time

from .common import load_particles, progress, require_ctf, rows_from_ids_file

NAME = "reconstruct"
HELP = "direct Fourier inversion with CTF correction"


def add_args(r):
    r.add_argument("--particles", required=True, help="particles.npz or RELION 3.1 .star")
    r.add_argument("--out-dir", required=True)
    r.add_argument("--name", default="map", help="output file prefix")
    r.add_argument("--ids", default="", help="text file of particle ids to use (default all)")
    r.add_argument("--box", type=int, default=0, help="Fourier-crop to this box first")
    r.add_argument("--wiener", type=float, default=0.05)
    r.add_argument("--pad", type=int, default=2)
    r.add_argument("--batch", type=int, default=64)
    r.add_argument("--seed", type=int, default=0, help="half-set split seed")


def main(a):
    from .. import distributed
    from ..reconstruct import reconstruct, save_reconstruction
    particles = load_particles(a.particles)
    require_ctf(particles)
    rows = rows_from_ids_file(particles, a.ids)
    if a.box and (a.box > particles.box or a.box % 2):
        raise ValueError("--box must be even and <= the particle box (%d)" % particles.box)
    t0 = time.time()
    rec = reconstruct(particles, rows, box=a.box or None, batch_size=a.batch,
                      device=a.device_obj, wiener=a.wiener, pad=a.pad, seed=a.seed,
                      progress=progress("reconstruct"))
    if not distributed.is_main():
        return
    save_reconstruction(rec, a.out_dir, a.name, {
        "particles": int(len(rows)), "apix": rec.apix, "box": int(rec.full.shape[0]),
        "resolution_0143": rec.resolution, "seconds": time.time() - t0})
    print("reconstructed %d particles: FSC 0.143 at %.2f Å" % (len(rows), rec.resolution))

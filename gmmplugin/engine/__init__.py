"""The GMM engine: pure numpy/torch, no Scipion import.

Units everywhere inside the engine: lengths in Å, spatial frequencies in 1/Å.
Arrays follow the MRC/numpy layout: a map is ``vol[z, y, x]``, an image is
``img[y, x]``, x being the fast (column) axis. The origin of every box is the
voxel ``D // 2`` along each axis (RELION/Scipion convention).

Pose convention is RELION's (see ``geometry.py``): a particle's rotation ``A``
maps map coordinates into the projection frame, ``P(x, y) = ∫ V(Aᵀ (x, y, z)) dz``,
and its shift ``origin`` (Å) is what must be added to image coordinates to
centre the particle: ``image(r) = P(r + origin)``.
"""

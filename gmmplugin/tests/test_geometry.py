import numpy as np

from gmmplugin.engine.geometry import euler_to_matrix, matrix_to_euler, random_rotations


def test_euler_matches_relion_formula():
    rot, tilt, psi = np.deg2rad([10.0, 40.0, -70.0])
    ca, sa, cb, sb, cg, sg = (np.cos(rot), np.sin(rot), np.cos(tilt), np.sin(tilt),
                              np.cos(psi), np.sin(psi))
    # RELION euler.cpp Euler_angles2matrix, written out element by element
    expected = np.array([
        [cg * cb * ca - sg * sa, cg * cb * sa + sg * ca, -cg * sb],
        [-sg * cb * ca - cg * sa, -sg * cb * sa + cg * ca, sg * sb],
        [sb * ca, sb * sa, cb]])
    assert np.allclose(euler_to_matrix(10, 40, -70), expected, atol=1e-12)


def test_euler_round_trip_including_gimbal_lock():
    rng = np.random.default_rng(1)
    A = random_rotations(500, rng)
    assert np.allclose(euler_to_matrix(*matrix_to_euler(A)), A, atol=1e-9)
    for tilt in (0.0, 180.0):
        B = euler_to_matrix(25.0, tilt, -40.0)
        assert np.allclose(euler_to_matrix(*matrix_to_euler(B)), B, atol=1e-9)


def test_random_rotations_are_uniform_rotations():
    A = random_rotations(20000, np.random.default_rng(2))
    assert np.allclose(A @ A.transpose(0, 2, 1), np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(A), 1.0)
    # projection directions (third row) uniform on the sphere: mean ~ 0, <z²> ~ 1/3
    z = A[:, 2, :]
    assert np.abs(z.mean(0)).max() < 0.02
    assert abs((z[:, 2] ** 2).mean() - 1 / 3) < 0.01

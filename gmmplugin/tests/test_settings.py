"""The automatic training band: the neutral GMM's resolution, capped for speed
and at Nyquist, with the reason given."""
from gmmplugin.engine.settings import (FINEST_AUTOMATIC_BAND, UNKNOWN_GMM_BAND,
                                       automatic_max_res)


def test_band_follows_the_gmm_within_limits():
    assert automatic_max_res(9.5, 1.0) == (9.5, "the resolution the neutral GMM was "
                                                 "fitted at")
    res, why = automatic_max_res(3.2, 1.0)
    assert res == FINEST_AUTOMATIC_BAND and "3.2" in why and "speed" in why
    res, why = automatic_max_res(0.0, 1.0)
    assert res == UNKNOWN_GMM_BAND and "not known" in why
    res, why = automatic_max_res(7.0, 4.0)                  # coarse pixels: Nyquist 8 Å
    assert res == 8.0 and "Nyquist" in why

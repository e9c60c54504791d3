"""
@article{Chen2021,
title = "Deep learning-based mixed-dimensional Gaussian mixture model for characterizing variability in cryo-EM",
author = "Chen, Muyuan and Ludtke, Steven J.",
journal = "Nature Methods",
volume = "18",
pages = "930--936",
year = "2021",
doi = "http://dx.doi.org/10.1038/s41592-021-01220-5"
}

@article{Chen2025,
title = "Building molecular model series from heterogeneous CryoEM structures using Gaussian mixture models and deep neural networks",
author = "Chen, Muyuan",
journal = "Communications Biology",
volume = "8",
pages = "798",
year = "2025",
doi = "http://dx.doi.org/10.1038/s42003-025-08202-0"
}

@article{Zhong2021,
title = "CryoDRGN: reconstruction of heterogeneous cryo-EM structures using neural networks",
author = "Zhong, Ellen D. and Bepler, Tristan and Berger, Bonnie and Davis, Joseph H.",
journal = "Nature Methods",
volume = "18",
pages = "176--185",
year = "2021",
doi = "http://dx.doi.org/10.1038/s41592-020-01049-4"
}
"""

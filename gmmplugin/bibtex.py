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

@article{Shapovalov2011,
title = "A smoothed backbone-dependent rotamer library for proteins derived from adaptive kernel density estimates and regressions",
author = "Shapovalov, Maxim V. and Dunbrack, Roland L., Jr.",
journal = "Structure",
volume = "19",
pages = "844--858",
year = "2011",
doi = "http://dx.doi.org/10.1016/j.str.2011.03.019"
}

@article{Lovell2003,
title = "Structure validation by C-alpha geometry: phi, psi and C-beta deviation",
author = "Lovell, Simon C. and Davis, Ian W. and Arendall, W. Bryan, III and de Bakker, Paul I. W. and Word, J. Michael and Prisant, Michael G. and Richardson, Jane S. and Richardson, David C.",
journal = "Proteins",
volume = "50",
pages = "437--450",
year = "2003",
doi = "http://dx.doi.org/10.1002/prot.10286"
}
"""

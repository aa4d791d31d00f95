"""Reference numbers: end of the learning curves of Oh et al. 2020, Fig. 3 (read off the plot,
approximate; SPEC §1). Data only."""

FIG3_FINAL_RETURN = {
    # task: (A2C, LPG-V, LPG)
    "tabular/dense": (8.6, 9.1, 10.5),
    "tabular/sparse": (0.92, 0.99, 0.98),
    "tabular/long_horizon": (11.8, 15.0, 18.1),
    "tabular/longer_horizon": (7.8, 8.4, 9.7),
    "tabular/long_dense": (20.4, 25.1, 33.9),
    "random/dense": (8.9, 9.0, 11.6),
    "random/long_horizon": (13.5, 11.9, 13.1),
    "random/small": (9.1, 12.8, 15.9),
    "random/small_sparse": (0.92, 0.85, 0.91),
    "random/very_dense": (325.0, 223.0, 327.0),
    "chain/short": (0.94, 1.00, 1.00),
    "chain/short_noisy": (0.94, 1.05, 1.05),
    "chain/long": (0.99, 1.00, 0.97),
    "chain/long_noisy": (1.00, 0.96, 0.99),
    "chain/distractor": (0.90, 0.83, 0.84),
}

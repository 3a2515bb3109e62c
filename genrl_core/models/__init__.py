"""Neural models: RSSM world model (connector, aligner and actor-critic follow)."""

"""Visual skill memory: danger/affinity atlases, exemplars, text skills, atlas-grounded shaping."""

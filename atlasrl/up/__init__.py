"""`atlasrl up`: run every role on this machine under one supervisor, with a live display and a run directory."""

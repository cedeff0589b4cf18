"""Docker-free multi-host deploy of atlasrl: inventory -> per-host shell scripts run over ssh (or locally)."""

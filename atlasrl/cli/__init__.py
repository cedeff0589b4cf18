"""The `atlasrl` command line. Each module registers its commands; heavy imports happen inside commands."""

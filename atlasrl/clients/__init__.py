"""Client libraries of each atlasrl service, written by the service owner, used by other roles."""

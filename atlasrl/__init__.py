"""atlasrl: gRPC-based distributed actor-learner platform for RL of vision-language agents."""
__version__ = "0.1.0"

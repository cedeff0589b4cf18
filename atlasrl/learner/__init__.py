"""The FSDP learner role: trains GRPO/PPO on streamed episodes and streams weights to actors."""

"""Rollout actors: drive many env sessions, generate with an engine, stream episodes to the learner."""

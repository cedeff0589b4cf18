"""Policy models shared by actors and the learner: tiny builds, loading, prompts, log-probs."""
